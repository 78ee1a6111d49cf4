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
                max_line_search: int = 20) -> OptimizationResult:
    r"""Train like MLIP-2's ``mlp train``: BFGS with periodic exact solves of the linear coefficients.

    The run has two phases, each a fresh BFGS run, as MLIP-2 trains an untrained potential:

    1. pre-training: ``pretrain_iter`` BFGS iterations (MLIP-2: 75), skipped when 0;
    2. training: up to ``max_iter`` BFGS iterations (MLIP-2's ``--max-iter``).

    Each phase starts by re-gauging the radial coefficients (``rescale``) and an exact re-solve of the species and
    moment coefficients (:func:`~mtpfit.optim.linear.linear_resolve`), repeats the re-solve every
    ``linear_every`` iterations, and the run ends with one more re-solve (``final_resolve``).

    **Update rule** (Nocedal & Wright, *Numerical Optimization*, 2nd ed., §6.1, Algorithm 6.1). With the
    dense inverse-Hessian approximation H_k and g_k = ∇L(θ_k):

    * direction p_k = −H_k g_k (steepest descent −g_k when H is reset or p_k is not a descent direction);
    * step θ_{k+1} = θ_k + α_k p_k, α_k from a line search satisfying the strong Wolfe conditions
      (N&W eq. 3.7 and Algorithms 3.5/3.6, via :func:`scipy.optimize.line_search`)

      L(θ_k + α p_k) ≤ L(θ_k) + c₁ α g_kᵀp_k,   |∇L(θ_k + α p_k)ᵀp_k| ≤ c₂ |g_kᵀp_k|,

      with the reference trainer's c₁ = 0.1, c₂ = 0.5; the trial step is α = 1, or ≈1/‖g‖ for a
      steepest-descent step (as scipy's BFGS starts);
    * with s_k = θ_{k+1} − θ_k, y_k = g_{k+1} − g_k, ρ_k = 1/(y_kᵀs_k):

      H_{k+1} = (I − ρ_k s_k y_kᵀ) H_k (I − ρ_k y_k s_kᵀ) + ρ_k s_k s_kᵀ      (N&W eq. 6.17),

      with H_0 = (y_0ᵀs_0 / y_0ᵀy_0) I set just before the first update (N&W eq. 6.20). An update with
      y_kᵀs_k ≤ 1e-10 ‖s_k‖‖y_k‖ is skipped (a strong-Wolfe step has y_kᵀs_k > 0; this guards round-off).

    The iteration runs in the variables of MLIP-2's parametrisation (see ``rescale``): θ = D u with
    D = diag(σ on the radial block, 1 elsewhere), so the quantities above are those of u.

    **Linear re-solve** (Novikov et al., Mach. Learn.: Sci. Technol. 2, 025002 (2021), MLIP-2). With the radial
    coefficients fixed the loss is quadratic in (ξ, c), so those are replaced by their exact weighted
    least-squares values at the start of each phase, every ``linear_every`` iterations within it, and at the
    end. After a re-solve inside a phase H is **kept**: the re-solve moves θ to the minimiser of a convex
    quadratic along the linear block, the curvature H has accumulated (radial block and radial–linear coupling)
    remains a model of the same smooth loss, while a reset would restart from a poorly scaled steepest-descent
    step. No secant pair spans the jump: the next pair starts from the gradient at the re-solved θ. Between the
    phases H is reset, as MLIP-2 starts a new BFGS run (see Notes).

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
        Iterations between exact re-solves of the species and moment coefficients within a phase; 0 disables
        the periodic and final re-solves (``rescale`` still re-solves at a phase start, as it must).
    pretrain_iter : int
        BFGS iterations of the pre-training phase (MLIP-2: 75 for an untrained potential); 0 skips it
        (MLIP-2's ``--skip-preinit``).
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
        At each phase start, re-gauge the radial coefficients with :func:`radial_gauge` (then re-solve) and
        run BFGS on u = θ/σ for the radial block, σ the RMS norm of the radial functions μ (concatenated over
        species pairs), so that u's radial functions have unit norm as MLIP-2's coefficients do (MLIP-2 keeps
        that norm in a separate ``scaling`` factor of the basis). ``False``: plain BFGS on θ.
    final_resolve : bool
        Re-solve the linear coefficients once more at the end (MLIP-2's trained potentials are at the exact
        linear optimum of their radial coefficients).
    max_line_search : int
        Iterations of one line search.

    Returns
    -------
    OptimizationResult
        ``x``, ``fun`` (loss at ``x``), ``jac``, ``nit`` (BFGS iterations, both phases), ``nfev``
        (loss+gradient passes, from ``objective.n_evaluations``), ``success``, ``message``, ``history`` (one
        row per iteration: ``iteration``, ``phase``, ``loss``, ``passes``, ``elapsed_s``), ``wall_time`` (s),
        ``n_resolves`` (linear re-solves) and ``n_predict_passes`` (energy+forces passes of the re-solves and
        gauges, one per species/moment coefficient each; not in ``nfev``).

    Raises
    ------
    ValueError
        For invalid settings or a non-finite loss.

    Notes
    -----
    What MLIP-2's log of an untrained potential (``train_det_level06_multi20``) shows, and how it is mirrored:

    * "Pre-training" is a complete BFGS run of 75 iterations (``BFGS iter 0 … 74``, ``step limit reached``),
      then the main run restarts the counter at 0 for ``--max-iter`` iterations. Its loss is, as far as can be
      told, the main run's: the weights are printed only before the main run, but the first logged loss
      (0.250266) is within 1 % of the default weights' re-solved loss at MLIP's defaults (0.2526 here), while
      other weightings give values off by large factors. The main run's first iterations lower the loss ten
      times more slowly than the last pre-training iterations did, the signature of a fresh inverse Hessian:
      H is reset between the phases.
    * Before pre-training, after it and after training, MLIP-2 searches the radial basis' ``scaling`` s
      (factors 1/1.2 … 1.2 repeated until the middle one wins; 0.111 here) by a condition number it prints.
      s multiplies every radial coefficient, and every basis function is a homogeneous polynomial in them
      (degree = number of basic moments multiplied), so after a re-solve the loss does not depend on s: the
      search is a gauge choice that conditions the linear system and the BFGS variables. The matrix whose
      condition number MLIP-2 prints could not be identified (none of the design or normal matrices tried
      reproduces its values); :func:`radial_gauge` balances the column norms of the weighted design matrix
      instead, and ``rescale`` keeps the radial functions' norm out of the BFGS variables as MLIP-2's
      separate s does. Without this, BFGS from MLIP's default coefficients (radial 1e-3) fails its first line
      search: the acceptable step is ~1e-10 of the gradient.
    * The trained ``pot.mtp`` is at the exact linear optimum (∂L/∂(ξ, c) ≈ 1e-9), hence ``final_resolve``.
    * Not inferable from the log: MLIP-2's initial radial coefficients for ``--init-params=same`` (radial
      functions of unit norm, judging by the trained file; the exact values are not documented), its line
      search's trial steps and interpolation, and where within a run its linear solves fall (the instrumented
      run made 101 linear solves and 470 loss+gradient passes in 125 iterations, most solves in the scaling
      searches). The caller's ``x0`` is used as given.
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

    run = _Run(objective, callback, c1, c2, stop_window, stop_tolerance, max_line_search)
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
        raise ValueError(f"training ended with a non-finite loss ({fun})")
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


SCALE = {"pretrain": True, "main": True}


class _Run:
    """Settings, counters and history shared by the phases of one run."""

    def __init__(self, objective, callback, c1, c2, stop_window, stop_tolerance, max_line_search):
        self.objective, self.callback = objective, callback
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
        raise ValueError(f"{phase}: the loss is {f} at the starting point")
    H = None                    # None: identity, scaled by yᵀs/yᵀy at the first update
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
            raise ValueError(f"{phase}: non-finite loss {f_new} at iteration {k + 1}")
        s, y = u_new - u, g_new - g
        ys = float(y @ s)
        if ys > 1e-10 * np.linalg.norm(s) * np.linalg.norm(y):
            if H is None:
                H = np.eye(len(u)) * (ys / float(y @ y) if SCALE[phase] else 1.0)        # N&W eq. 6.20
            rho = 1.0 / ys
            Hy = H @ y
            # (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ, expanded for symmetric H
            H = H - rho * (np.outer(s, Hy) + np.outer(Hy, s)) + (rho * rho * float(y @ Hy) + rho) * np.outer(s, s)
        u, f, g = u_new, f_new, g_new
        k += 1
        run.record(phase, to_theta(u), f)
        if run.stopped:
            return u, True, f"stopped by the callback after {k} iterations"


def _wolfe_step(fun, jac, u, f, g, H, c1, c2, max_line_search):
    """A strong-Wolfe step along −Hg (−g when H is None); None when it fails or −Hg is not a descent direction."""
    p = -g if H is None else -(H @ g)
    if float(g @ p) >= 0:
        return None
    # trial step 1 for a quasi-Newton direction; for steepest descent a previous value f + ‖g‖/2 makes scipy's
    # first trial 1.01·2(f − f_prev)/(gᵀp) ≈ 1/‖g‖, as scipy's BFGS starts
    old_old = f + np.linalg.norm(g) / 2 if H is None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # LineSearchWarning is a RuntimeWarning
        alpha, _, _, f_new, _, _ = scipy.optimize.line_search(
            fun, jac, u, p, gfk=g, old_fval=f, old_old_fval=old_old, c1=c1, c2=c2, maxiter=max_line_search)
    if alpha is None or f_new is None:
        return None
    u_new = u + alpha * p
    return u_new, fun(u_new), jac(u_new)     # cached: the line search's last pass is normally at u_new
