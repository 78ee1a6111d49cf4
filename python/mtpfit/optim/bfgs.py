"""Dense BFGS with a strong-Wolfe line search, the engine of the native BFGS and of variable projection."""
from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.optimize

from .result import OptimizationResult
from .state import ResumeError, check_resume

__all__ = ["BFGSRun", "dense_bfgs"]


class BFGSRun:
    """Settings, counters and history shared by the phases of one run of :func:`dense_bfgs`.

    ``n_resolves`` counts the linear systems built and solved (variable projection, periodic re-solves);
    ``stopped`` is set by the callback (StopIteration) or the wall-time budget (then also ``budget_reached``);
    ``outcomes`` holds (message, ok) of the finished phases; ``context`` is set by the running phase to a
    function returning what it needs to resume (its scale, its re-solve's reference), saved with every state.
    """

    def __init__(self, objective, callback, c1, c2, stop_window, stop_tolerance, max_line_search,
                 scale_initial_hessian, time_limit=None):
        self.objective, self.callback, self.time_limit = objective, callback, time_limit
        self.scale_initial_hessian = bool(scale_initial_hessian)
        self.c1, self.c2, self.max_line_search = c1, c2, max_line_search
        self.stop_window, self.stop_tolerance = stop_window, stop_tolerance
        self.start = time.perf_counter()
        self.passes_before = objective.n_evaluations
        self.nit = self.n_resolves = 0
        self.budget_reached = False
        self.history: list[dict] = []
        self.outcomes: list[tuple[str, bool]] = []
        self.context = lambda: {}
        self.stopped = False
        blocks = objective.mtp.blocks
        self.radial = blocks["radial"]

    def restore(self, state: dict) -> None:
        """Continue the counters, history and clock of the run that saved ``state`` (see :meth:`record`).

        Raises
        ------
        ResumeError
            If ``state`` lacks an entry.
        """
        check_resume(state, dict.fromkeys(("nit", "history", "n_resolves", "elapsed_s", "passes", "outcomes",
                                           "phase", "context", "loop")), "BFGS")
        self.nit, self.n_resolves = int(state["nit"]), int(state["n_resolves"])
        self.history = list(state["history"])
        self.outcomes = [(str(m), bool(ok)) for m, ok in state["outcomes"]]
        self.start = time.perf_counter() - float(state["elapsed_s"])
        self.passes_before = self.objective.n_evaluations - int(state["passes"])

    def record(self, phase, x, f, loop):
        """One finished iteration: a history row, then the callback with ``x``, ``fun``, ``nit``, ``phase`` and
        ``state`` (a function returning the run's resumable state: counters, history, the phase's context and
        ``loop``, the BFGS iterate)."""
        self.nit += 1
        elapsed = time.perf_counter() - self.start
        passes = self.objective.n_evaluations - self.passes_before
        self.history.append({"iteration": self.nit, "phase": phase, "loss": float(f), "passes": passes,
                             "elapsed_s": elapsed})
        if self.callback is not None:
            # arrays are replaced, never modified, by the phases: the snapshot holds references
            snapshot = {"nit": self.nit, "history": list(self.history), "n_resolves": self.n_resolves,
                        "elapsed_s": elapsed, "passes": passes, "outcomes": [list(o) for o in self.outcomes],
                        "phase": phase, "context": self.context(), "loop": loop}
            try:
                self.callback(OptimizationResult(x=x.copy(), fun=float(f), nit=self.nit, phase=phase,
                                                 state=lambda: snapshot))
            except StopIteration:
                self.stopped = True
        if self.time_limit is not None and self.history[-1]["elapsed_s"] >= self.time_limit:
            self.stopped = self.budget_reached = True


def dense_bfgs(run, phase, fun, jac, u, n_iter, to_theta, refresh=None, resume=None):
    """Dense BFGS from a fresh inverse Hessian for at most ``n_iter`` iterations; returns (u, ok, message).

    ``refresh(k, u)`` may replace u at the start of iteration k > 0 (a linear re-solve); H is kept. ``resume``, the
    ``loop`` entry of a state from :meth:`BFGSRun.record`, continues that run's iterate (u, loss, gradient, H,
    iteration, losses) instead of starting at ``u`` (which then only gives the shape).

    Raises
    ------
    ResumeError
        If ``resume`` does not fit (shapes, or an iteration beyond ``n_iter``).
    """
    if resume is None:
        f, g = fun(u), jac(u)
        if not np.isfinite(f):
            raise FloatingPointError(f"{phase}: the loss is {f} at the starting point")
        H = None                    # None: steepest descent; H_0 is set at the first update
        losses = []                 # loss at the start of each iteration of this phase
        k = 0
    else:
        u, f, g, H, losses, k = _resumed(resume, phase, len(u), n_iter)
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
        loop = {"u": u, "f": float(f), "g": g, "k": k, "losses": list(losses)}
        if H is not None:
            loop["H"] = H
        run.record(phase, to_theta(u), f, loop)
        if run.stopped:
            if run.budget_reached:
                return u, False, f"wall-time budget of {run.time_limit:g} s reached after {k} iterations"
            return u, True, f"stopped by the callback after {k} iterations"


def _resumed(loop, phase, n, n_iter):
    """(u, f, g, H, losses, k) of a saved BFGS iterate of n variables, checked."""
    check_resume(loop, {"u": (n,), "f": None, "g": (n,), "k": None, "losses": None}
                 | ({"H": (n, n)} if "H" in loop else {}), phase)
    u = np.asarray(loop["u"], dtype=float)
    k = loop["k"]
    if not isinstance(k, int) or not 0 <= k <= n_iter or len(loop["losses"]) != k:
        raise ResumeError(f"{phase}: the saved iterate is at iteration {k!r} (with {len(loop['losses'])} losses), "
                          f"outside the {n_iter} iterations of this phase")
    return u.copy(), float(loop["f"]), np.array(loop["g"]), loop.get("H"), [float(v) for v in loop["losses"]], k


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
