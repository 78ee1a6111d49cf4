"""The reference trainer's optimizer: dense BFGS with a strong-Wolfe line search and exact linear re-solves."""
from __future__ import annotations

import time
import warnings
from typing import Callable

import numpy as np
import scipy.optimize

from ..objective.objective import Objective
from .linear import linear_design, linear_resolve
from .result import OptimizationResult

__all__ = ["native_bfgs", "radial_gauge"]


def native_bfgs(objective: Objective, x0, max_iter: int = 1000, linear_every: int = 50, pretrain_iter: int = 75,
                c1: float = 0.1, c2: float = 0.5, stop_window: int = 50, stop_tolerance: float = 1e-3,
                callback: Callable | None = None, rescale: bool = True, final_resolve: bool = True,
                scale_initial_hessian: bool = False, max_line_search: int = 20,
                time_limit: float | None = None) -> OptimizationResult:
    r"""Train like MLIP-2's ``mlp train``: BFGS with exact solves of the linear coefficients.

    The run has two phases, each a fresh BFGS run (new inverse Hessian, new iteration counter), as MLIP-2
    trains an untrained potential:

    1. **pre-training**, ``pretrain_iter`` iterations (MLIP-2: 75; 0 skips it): BFGS on the radial
       coefficients r of the *reduced* loss L̃(r) = min_{ξ,c} L(r, ξ, c) — every loss evaluation first solves the
       species and moment coefficients exactly (:func:`~mtpfit.optim.linear.linear_resolve`, variable
       projection). Its gradient is ∂L/∂r at the re-solved θ (∂L/∂(ξ, c) = 0 there: envelope theorem).
    2. **training**, up to ``max_iter`` iterations (MLIP-2's ``--max-iter``): BFGS on all of θ, with the
       species and moment coefficients re-solved exactly at its start and every ``linear_every`` iterations.

    The run ends with one more re-solve (``final_resolve``).

    **Update rule** (Nocedal & Wright, *Numerical Optimization*, 2nd ed., §6.1, Algorithm 6.1), on the
    variables u of the phase (see ``rescale``) with the dense inverse-Hessian approximation H_k and g_k = ∇L(u_k):

    * direction p_k = −H_k g_k (steepest descent −g_k at the start of a phase or after a failed line search);
    * step u_{k+1} = u_k + α_k p_k, α_k from a line search satisfying the strong Wolfe conditions
      (N&W eq. 3.7 and Algorithms 3.5/3.6, via :func:`scipy.optimize.line_search`)

      L(u_k + α p_k) ≤ L(u_k) + c₁ α g_kᵀp_k,   |∇L(u_k + α p_k)ᵀp_k| ≤ c₂ |g_kᵀp_k|,

      with the reference trainer's c₁ = 0.1, c₂ = 0.5; the trial step is α = 1 for a quasi-Newton direction
      and min(1, 1/‖g‖) for steepest descent (as scipy's BFGS starts), retried 10³ and 10⁶ times shorter
      if the search fails (scipy's zoom bisects only 10 times);
    * with s_k = u_{k+1} − u_k, y_k = g_{k+1} − g_k, ρ_k = 1/(y_kᵀs_k):

      H_{k+1} = (I − ρ_k s_k y_kᵀ) H_k (I − ρ_k y_k s_kᵀ) + ρ_k s_k s_kᵀ      (N&W eq. 6.17),

      from H_0 = I (or, with ``scale_initial_hessian``, H_0 = (y_0ᵀs_0 / y_0ᵀy_0) I, N&W eq. 6.20). An update
      with y_kᵀs_k ≤ 1e-10 ‖s_k‖‖y_k‖ is skipped (a strong-Wolfe step has y_kᵀs_k > 0; this guards
      round-off).

    **Linear re-solve** (Novikov et al., Mach. Learn.: Sci. Technol. 2, 025002 (2021), MLIP-2). With the radial
    coefficients fixed the loss is quadratic in (ξ, c), so those can be set to their exact weighted
    least-squares values. In the training phase H is **kept** after a periodic re-solve: the re-solve moves θ
    to the minimiser of a convex quadratic along the linear block, and the curvature H has accumulated
    (radial block, radial–linear coupling) remains a model of the same smooth loss; no secant pair spans the
    jump (the next pair starts from the gradient at the re-solved θ). Resetting instead restarts from a
    steepest-descent step and throws that curvature away: on the reference problem (level 6, 20
    configurations, 75 + 400 iterations) keeping H ends at loss 5.1e-6 after 777 passes, resetting at 1.0e-5
    after 1173 (level 8, 40 configurations: 5.4e-6 / 758 vs 7.7e-6 / 1144).

    **Stopping** (MLIP-2's ``--bfgs-conv-tol``): a phase stops when the loss has fallen by less than
    ``stop_tolerance`` (relative) over the last ``stop_window`` iterations, when its iteration budget is spent,
    when the gradient vanishes, or when the line search fails from a steepest-descent direction.

    Parameters
    ----------
    objective : Objective
        Loss and gradient (one cached C++ pass per point).
    x0 : ndarray, shape (n_params,)
        Starting θ.
    max_iter : int
        BFGS iterations of the training phase, like MLIP-2's ``--max-iter`` (its default is 1000). The
        pre-training phase comes on top: at most ``pretrain_iter + max_iter`` iterations in all.
    linear_every : int
        Iterations between exact re-solves of the species and moment coefficients in the training phase;
        0 disables the periodic and the final re-solves (a phase start still re-solves when ``rescale``).
    pretrain_iter : int
        BFGS iterations of the pre-training phase (MLIP-2: 75 for an untrained potential); 0 skips it
        (MLIP-2's ``--skip-preinit``), as is appropriate for a trained starting point.
    c1, c2 : float
        Strong Wolfe constants, 0 < c1 < c2 < 1.
    stop_window : int
        Iterations over which the relative decrease of the loss is measured.
    stop_tolerance : float
        Relative decrease below which a phase stops; 0 disables the test.
    callback : callable, optional
        ``callback(intermediate_result)`` after every iteration with an :class:`OptimizationResult` holding
        ``x``, ``fun``, ``nit`` and ``phase``; raising :class:`StopIteration` ends the run.
    rescale : bool
        Work in MLIP-2's parametrisation. BFGS runs on u with θ = D u, D = σ on the radial block and 1
        elsewhere, σ the RMS norm of the radial functions μ (coefficients concatenated over species pairs) at
        the phase start, so that u's radial functions have unit norm as MLIP-2's coefficients do (MLIP-2 keeps
        their size in the basis' separate ``scaling`` factor); and at the start of the training phase the radial
        block is first multiplied by :func:`radial_gauge` (then re-solved), the counterpart of MLIP-2's
        ``scaling`` search. ``False``: plain BFGS on θ.
    final_resolve : bool
        Re-solve the linear coefficients once more at the end (MLIP-2's trained potentials are at the exact
        linear optimum of their radial coefficients).
    scale_initial_hessian : bool
        Use N&W's H_0 = (yᵀs/yᵀy) I instead of H_0 = I. Off by default: in the unit-norm variables u the
        identity is already of the right size, while the first secant pair measures the stiffest direction
        and shrinks H_0 for all others, which BFGS then corrects one direction per iteration. On the
        reference problem (75 + 50 iterations) the scaled start ends at loss 7.9e-4, H_0 = I at 2.5e-5;
        at levels 10 and 16 (75 + 100 iterations, 30 and 20 configurations) 4.7e-4 vs 1.2e-5 and
        5.9e-5 vs 3.6e-6.
    max_line_search : int
        Iterations of one line search.
    time_limit : float, optional
        Wall-time budget (s): the run stops after the first iteration that ends past it, as if the callback had
        stopped it.

    Returns
    -------
    OptimizationResult
        ``x``, ``fun`` (loss at ``x``), ``jac``, ``nit`` (BFGS iterations, both phases), ``nfev``
        (loss+gradient passes, from ``objective.n_evaluations``), ``success``, ``message``, ``history`` (one
        row per iteration: ``iteration``, ``phase``, ``loss``, ``passes``, ``elapsed_s``), ``wall_time`` (s),
        ``n_resolves`` (linear re-solves) and ``n_predict_passes`` (energy+forces passes of the re-solves and
        of :func:`radial_gauge`, S + M each; not in ``nfev``).

    Raises
    ------
    ValueError
        For invalid settings.
    FloatingPointError
        When the loss becomes non-finite (the run diverged).

    Notes
    -----
    Cost: a pre-training evaluation is one loss+gradient pass plus S + M energy+forces passes (the re-solve);
    a training iteration is one or a few loss+gradient passes, and a re-solve S + M energy+forces passes.
    Pre-training therefore dominates for large M (level 16, M = 92: ~17 000 energy+forces passes for
    75 + 100 iterations on 20 configurations).

    What MLIP-2's log of an untrained potential (``train_det_level06_multi20``) shows, and how it is mirrored:

    * Pre-training is a complete BFGS run of 75 iterations (``BFGS iter 0 … 74``, ``step limit reached``);
      then the main run restarts the counter at 0 for ``--max-iter`` iterations. Its loss is, as far as can be
      told, the main run's: the weights are printed only before the main run, but the first logged loss
      (0.250266) is within 1–3 % of the default weights' re-solved loss here (0.2526 with unit-norm diagonal
      radial coefficients, 0.2586 with MLIP's load defaults), while other weightings give values off by large
      factors (0.19 without stress, 0.0022 without forces). The main run's first iterations lower the loss ten
      times more slowly than the last pre-training iterations did: a fresh inverse Hessian.
    * The first pre-training iteration lowers the loss from 0.250 to 0.111 (−56 %). At a re-solved start
      ∂L/∂(ξ, c) = 0, so the first BFGS direction is −∂L/∂r; from the re-solved MLIP defaults (0.2586) the
      full loss along it falls no lower than 0.251 (−3 %), while the reduced loss (linear coefficients re-solved at
      the trial point) reaches 0.075. Hence the variable-projection pre-training. The log does not say how
      MLIP-2 organises it; its instrumented run made 101 linear solves and 470 loss+gradient passes in its
      125 iterations.
    * Before pre-training, after it and after training, MLIP-2 searches the radial basis' ``scaling`` s
      (factors 1/1.2 … 1.2, repeated until the middle one wins; 0.111 here) by a condition number it prints.
      s multiplies every radial coefficient, and every basis function is a homogeneous polynomial in them
      (degree = number of basic moments multiplied), so after a re-solve the loss does not depend on s: the
      search is a gauge choice that conditions the linear system and the BFGS variables. The matrix whose
      condition number MLIP-2 prints could not be identified (none of the design or normal matrices tried
      reproduces its values); :func:`radial_gauge` balances the column norms of the weighted design matrix
      instead. Plain BFGS on θ from MLIP's default coefficients (radial 1e-3) fails its first line search:
      the acceptable step is ~1e-10 of the gradient.
    * The trained ``pot.mtp`` is at the exact linear optimum (∂L/∂(ξ, c) ≈ 1e-9), hence ``final_resolve``.
    * Not inferable from the log: MLIP-2's initial radial coefficients for ``--init-params=same`` (radial
      functions of unit norm, judging by the trained file), its line search's trial steps and interpolation,
      its initial inverse Hessian, and where its linear solves fall. The caller's ``x0`` is used as given.
    """
    x = np.array(x0, dtype=float)
    if x.shape != (objective.n_params,):
        raise ValueError(f"x0 has shape {x.shape}, expected ({objective.n_params},)")
    if not 0 < c1 < c2 < 1:
        raise ValueError(f"need 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
    for name, value in (("max_iter", max_iter), ("pretrain_iter", pretrain_iter), ("linear_every", linear_every),
                        ("stop_window", stop_window), ("max_line_search", max_line_search)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value}")
    if stop_window == 0 and stop_tolerance > 0:
        raise ValueError("stop_window must be positive when stop_tolerance is")

    run = _Run(objective, callback, c1, c2, stop_window, stop_tolerance, max_line_search, scale_initial_hessian,
               time_limit)
    messages, success = [], True
    if pretrain_iter > 0:
        x, ok, message = _pretrain(run, x, int(pretrain_iter), rescale)
        messages.append(f"pretrain: {message}")
        success = success and ok
    if max_iter > 0 and not run.stopped:
        x, ok, message = _train(run, x, int(max_iter), linear_every, rescale)
        messages.append(f"main: {message}")
        success = success and ok
    if final_resolve and linear_every and not run.stopped:
        x = run.resolve(x)
    fun, jac = objective.fun_and_jac(x)
    if not np.isfinite(fun):
        raise FloatingPointError(f"training ended with a non-finite loss ({fun})")
    return OptimizationResult(
        x=x, fun=float(fun), jac=jac, nit=run.nit, nfev=objective.n_evaluations - run.passes_before,
        success=success, message="; ".join(messages) if messages else "no iterations requested",
        history=run.history, wall_time=time.perf_counter() - run.start, n_resolves=run.n_resolves,
        n_predict_passes=run.n_predict_passes)


def radial_gauge(objective: Objective, x) -> float:
    """The factor λ for the radial block that best balances the linear least-squares system.

    Multiplying every radial coefficient by λ multiplies the design-matrix column of a basis function of
    degree d (the number of basic moments in its product) by λᵈ and leaves the species columns (d = 0) alone;
    after a re-solve of the linear coefficients the loss is unchanged (only the orthonormality penalty, 1e-9
    per configuration, notices). λ is chosen to minimise the spread max_j log‖a_j λ^{d_j}‖ − min_j … of the
    √w-weighted column norms (a piecewise-linear convex function of log λ, minimised exactly at a crossing),
    in the spirit of MLIP-2's search of the basis' ``scaling`` by a condition number.

    Parameters
    ----------
    objective : Objective
    x : ndarray, shape (n_params,)

    Returns
    -------
    float
        λ > 0 (1 when the spread does not depend on it). Costs S + M energy+forces passes.
    """
    A, _, weights = linear_design(objective, x)
    norms = np.linalg.norm(A * np.sqrt(weights)[:, None], axis=0)
    degrees = _linear_degrees(objective.mtp.basis)
    used = norms > 0
    logs, degrees = np.log(norms[used]), degrees[used]
    if len(set(degrees.tolist())) < 2:
        return 1.0

    def spread(t):
        values = logs + degrees * t
        return values.max() - values.min()

    candidates = [0.0]
    for i in range(len(logs)):
        for j in range(i + 1, len(logs)):
            if degrees[i] != degrees[j]:
                candidates.append((logs[i] - logs[j]) / (degrees[j] - degrees[i]))
    candidates = np.unique(candidates)
    best = min(candidates, key=spread)
    return float(np.exp(best))


def _linear_degrees(basis) -> np.ndarray:
    """Polynomial degree in the radial coefficients of each species (0) and moment coefficient's column."""
    degree = np.zeros(basis.alpha_moments_count, dtype=int)
    degree[: len(basis.alpha_index_basic)] = 1
    for i0, i1, _, t in basis.alpha_index_times:
        degree[t] = degree[i0] + degree[i1]
    return np.concatenate([np.zeros(basis.species_count, dtype=int), degree[basis.alpha_moment_mapping]])


class _Run:
    """Settings, counters and history shared by the phases of one run."""

    def __init__(self, objective, callback, c1, c2, stop_window, stop_tolerance, max_line_search,
                 scale_initial_hessian, time_limit=None):
        self.objective, self.callback, self.time_limit = objective, callback, time_limit
        self.scale_initial_hessian = bool(scale_initial_hessian)
        self.c1, self.c2, self.max_line_search = c1, c2, max_line_search
        self.stop_window, self.stop_tolerance = stop_window, stop_tolerance
        self.start = time.perf_counter()
        self.passes_before = objective.n_evaluations
        self.nit = self.n_resolves = self.n_predict_passes = 0
        self.history: list[dict] = []
        self.stopped = False
        blocks = objective.mtp.blocks
        self.radial = blocks["radial"]
        self.n_linear = blocks["moment"].stop - blocks["species"].start

    def resolve(self, x):
        self.n_resolves += 1
        self.n_predict_passes += self.n_linear
        return linear_resolve(self.objective, x)

    def gauge(self, x):
        self.n_predict_passes += self.n_linear
        x = x.copy()
        x[self.radial] *= radial_gauge(self.objective, x)
        return x

    def radial_norm(self, x) -> float:
        """σ: RMS over μ of the norm of radial function μ's coefficients (all species pairs); 1 if zero."""
        sigma = float(np.sqrt(np.sum(x[self.radial] ** 2) / self.objective.mtp.basis.radial_funcs_count))
        return sigma if sigma > 0 and np.isfinite(sigma) else 1.0

    def record(self, phase, x, f):
        self.nit += 1
        self.history.append({"iteration": self.nit, "phase": phase, "loss": float(f),
                             "passes": self.objective.n_evaluations - self.passes_before,
                             "elapsed_s": time.perf_counter() - self.start})
        if self.callback is not None:
            try:
                self.callback(OptimizationResult(x=x.copy(), fun=float(f), nit=self.nit, phase=phase))
            except StopIteration:
                self.stopped = True
        if self.time_limit is not None and self.history[-1]["elapsed_s"] >= self.time_limit:
            self.stopped = True


def _pretrain(run, x, n_iter, rescale):
    """BFGS on the radial coefficients of the reduced loss L̃(r) = min over (ξ, c) of L(r, ξ, c)."""
    objective, radial = run.objective, run.radial
    x = run.resolve(x)
    sigma = run.radial_norm(x) if rescale else 1.0
    cache = {}

    def evaluate(u):
        key = u.tobytes()
        if key not in cache:
            theta = x.copy()
            theta[radial] = sigma * u
            theta = run.resolve(theta)
            f, g = objective.fun_and_jac(theta)
            # envelope theorem: ∂L/∂(ξ, c) = 0 at the re-solved θ, so ∂L̃/∂r = ∂L/∂r there
            cache.clear()
            cache[key] = (f, sigma * g[radial], theta)
        return cache[key]

    def fun(u):
        return evaluate(u)[0]

    def jac(u):
        return evaluate(u)[1].copy()

    u, ok, message = _bfgs(run, "pretrain", fun, jac, x[radial] / sigma, n_iter, lambda u: evaluate(u)[2])
    return evaluate(u)[2], ok, message


def _train(run, x, n_iter, linear_every, rescale):
    """BFGS on all of θ, with the linear coefficients re-solved every ``linear_every`` iterations."""
    objective = run.objective
    if rescale:
        x = run.gauge(x)
    if rescale or linear_every:
        x = run.resolve(x)
    d = np.ones_like(x)
    if rescale:
        d[run.radial] = run.radial_norm(x)

    def fun(u):
        return objective.fun(d * u)

    def jac(u):
        return d * objective.jac(d * u)

    def refresh(k, u):
        if linear_every and k % linear_every == 0:
            return run.resolve(d * u) / d
        return None

    u, ok, message = _bfgs(run, "main", fun, jac, x / d, n_iter, lambda u: d * u, refresh)
    return d * u, ok, message


def _bfgs(run, phase, fun, jac, u, n_iter, to_theta, refresh=None):
    """Dense BFGS from a fresh inverse Hessian for at most ``n_iter`` iterations; returns (u, ok, message).

    ``refresh(k, u)`` may replace u at the start of iteration k > 0 (a linear re-solve); H is kept.
    """
    f, g = fun(u), jac(u)
    if not np.isfinite(f):
        raise FloatingPointError(f"{phase}: the loss is {f} at the starting point")
    H = None                    # None: steepest descent; H_0 is set at the first update
    losses = []                 # loss at the start of each iteration of this phase
    k = 0
    while True:
        if k > 0 and refresh is not None:
            new = refresh(k, u)
            if new is not None:
                u = new
                f, g = fun(u), jac(u)
        losses.append(f)
        if run.stop_tolerance > 0 and k >= run.stop_window:
            before = losses[k - run.stop_window]
            if before - f < run.stop_tolerance * abs(before):
                return u, True, (f"loss fell by less than {run.stop_tolerance:g} (relative) over "
                                 f"{run.stop_window} iterations, after {k}")
        if k >= n_iter:
            return u, True, f"iteration limit {n_iter} reached"
        if not np.any(g):
            return u, True, f"zero gradient after {k} iterations"

        step = _wolfe_step(fun, jac, u, f, g, H, run.c1, run.c2, run.max_line_search)
        if step is None and H is not None:
            H = None                                            # restart from steepest descent once
            step = _wolfe_step(fun, jac, u, f, g, H, run.c1, run.c2, run.max_line_search)
        if step is None:
            return u, False, f"line search failed after {k} iterations"
        u_new, f_new, g_new = step
        if not np.isfinite(f_new):
            raise FloatingPointError(f"{phase}: non-finite loss {f_new} at iteration {k + 1}")
        s, y = u_new - u, g_new - g
        ys = float(y @ s)
        if ys > 1e-10 * np.linalg.norm(s) * np.linalg.norm(y):
            if H is None:
                H = np.eye(len(u)) * (ys / float(y @ y) if run.scale_initial_hessian else 1.0)   # N&W 6.20
            rho = 1.0 / ys
            Hy = H @ y
            # (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ, expanded for symmetric H
            H = H - rho * (np.outer(s, Hy) + np.outer(Hy, s)) + (rho * rho * float(y @ Hy) + rho) * np.outer(s, s)
        u, f, g = u_new, f_new, g_new
        k += 1
        run.record(phase, to_theta(u), f)
        if run.stopped:
            return u, True, f"stopped by the callback after {k} iterations"


def _wolfe_step(fun, jac, u, f, g, H, c1, c2, max_line_search, retries: int = 3, shrink: float = 1e-3):
    """A strong-Wolfe step along −Hg (−g when H is None); None when it fails or −Hg is not a descent direction.

    The first trial step is α = 1 for a quasi-Newton direction and min(1, 1/‖g‖) for steepest descent (as
    scipy's BFGS starts). scipy's zoom phase bisects at most 10 times, so when the first trial overshoots by
    more than ~10³ (or the loss overflows there) the search fails; it is then repeated ``retries`` times with
    the trial step multiplied by ``shrink`` (the bracketing phase can also grow a short trial step by 2 per
    iteration).
    """
    p = -g if H is None else -(H @ g)
    slope = float(g @ p)
    if not slope < 0:
        return None
    trial = 1.0 if H is not None else min(1.0, 1.0 / float(np.linalg.norm(g)))
    for _ in range(retries + 1):
        # scipy's first trial is min(1, 1.01·2(f − f_prev)/slope): choose f_prev to make it `trial`
        old_old = f - trial * slope / 2.02
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # LineSearchWarning is a RuntimeWarning
            alpha, _, _, f_new, _, _ = scipy.optimize.line_search(
                fun, jac, u, p, gfk=g, old_fval=f, old_old_fval=old_old, c1=c1, c2=c2, maxiter=max_line_search)
        if alpha is not None and f_new is not None:
            u_new = u + alpha * p
            return u_new, fun(u_new), jac(u_new)     # cached: the line search's last pass is normally at u_new
        trial *= shrink
    return None
