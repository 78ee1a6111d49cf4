"""Variable projection with Levenberg–Marquardt steps: Kaufman's Gauss–Newton model of the reduced loss.

The reduced loss L̃(r) = min_{ξ,c} L(r, ξ, c) of the radial coefficients r (:class:`~mtpfit.optim.linear.ReducedLoss`)
is itself a sum of squares, of the residuals left after the exact linear solve: W^½ r̃(r) = P⊥(r) W^½ (y − …),
P⊥ the projector onto the orthogonal complement of the weighted linear design W^½A(r). Kaufman's approximation
of its Jacobian keeps the projected radial Jacobian P⊥ W^½ J_r and drops the derivative of the projector (Kaufman,
BIT 15, 49 (1975); Golub & Pereyra, Inverse Problems 19, R1 (2003), §4). Its Gauss–Newton matrix is the Schur
complement of the linear block in JᵀWJ,

    S = J_rᵀ W^½ P⊥ W^½ J_r = H_rr − H_rl H_ll⁺ H_lr,   H = JᵀWJ at the re-solved θ,

so it comes from the same JᵀWJ the Levenberg–Marquardt trainer builds, sketched or exact
(:meth:`~mtpfit.objective.Objective.gauss_newton`), and the gradient is the exact ∇L̃ = 2 JᵀWr restricted to r
(envelope theorem, the linear block of the gradient vanishes at the solve).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.linalg

from ..objective.objective import Objective
from .least_squares import _Damping, _run
from .linear import ReducedLoss, _linear_slice, require_linear_model
from .result import OptimizationResult
from .state import check_resume

__all__ = ["kaufman_matrix", "varpro_lm"]


def varpro_lm(objective: Objective, x0, max_iter: int = 1000, sketch: int = 8, tau: float = 1e-3,
              gtol: float = 1e-10, xtol: float = 1e-12, ftol: float = 1e-10, max_lambda: float = 1e16,
              ridge: float = 0.0, rcond: float = 1e-12, time_limit: float | None = None,
              callback: Callable | None = None, resume: dict | None = None) -> OptimizationResult:
    r"""Train by variable projection with Levenberg–Marquardt steps on the radial coefficients (Kaufman's model).

    Every iterate has the species and moment coefficients solved exactly (:class:`~mtpfit.optim.linear.ReducedLoss`);
    the radial coefficients r take Levenberg–Marquardt steps (S + λD) δ = −g_r on the reduced loss L̃(r), with S
    the Schur complement of the linear block in JᵀWJ (:func:`kaufman_matrix`), g_r = ½∇L̃(r), D the running
    maximum of diag(S) and Nielsen's damping update (:func:`~mtpfit.optim.least_squares.levenberg_marquardt`).
    A trial point costs one linear system (its L̃); an accepted one adds one JᵀWJ build, sketched with
    ``sketch`` rows per configuration (0: exact), which also gives the exact gradient. Compared with
    Levenberg–Marquardt on all of θ, the stiff linear directions are solved, not damped; compared with
    :func:`~mtpfit.optim.varpro.varpro`, the radial steps use curvature from the first iteration. Measured in
    benchmarks/RESULTS.md §7 (time to accuracy on mlearn and Ag–Pd).

    Parameters
    ----------
    objective : Objective
    x0 : ndarray, shape (n_params,)
        Starting θ: its radial block is the starting point, its linear block the reference of the first
        re-solve's minimum-norm change (:func:`~mtpfit.optim.linear.solve_linear`).
    max_iter : int
        Iterations (accepted or rejected steps).
    sketch : int
        Rows per configuration of the sketched JᵀWJ (:meth:`~mtpfit.objective.Objective.gauss_newton`); 0 for
        the exact one, about (3N + 10)/(sketch + 1) times dearer for N-atom configurations.
    tau, gtol, xtol, ftol, max_lambda : float
        As in :func:`~mtpfit.optim.least_squares.levenberg_marquardt` (gtol and xtol on the radial block).
    ridge : float
        λ of a ridge term λ‖c‖² in the linear solves (0: none); the reduced loss includes it.
    rcond : float
        Rank threshold of the linear solves and of H_ll⁺ in :func:`kaufman_matrix`.
    time_limit : float, optional
        Wall-time budget (s), checked after every iteration.
    callback : callable, optional
        ``callback(intermediate_result)`` (re-solved θ as ``x``, ``fun`` = L̃, ``nit``, ``state``: a function
        returning the resumable state) after every iteration; raising StopIteration stops the run.
    resume : dict, optional
        A ``state`` from the callback: the run continues on the trajectory of an uninterrupted one (radial
        iterate, Kaufman matrix, damping, sketch seed, the linear solve's reference, counters, history).

    Returns
    -------
    OptimizationResult
        ``x`` (re-solved θ), ``fun`` (L̃ at x), ``jac`` (∇L at x, the linear block ≈ 0), ``nit``, ``nfev`` (0:
        no separate loss passes), ``njev`` (JᵀWJ builds), ``n_resolves`` (linear systems), ``success``,
        ``message``, ``history`` (``iteration``, ``loss``, ``lambda``, ``accepted``, ``rho``, ``elapsed_s``),
        ``wall_time``.

    Raises
    ------
    ValueError
        If x0 has the wrong shape, a setting is invalid or L̃ at x0 is not finite.
    ResumeError
        If ``resume`` does not fit this run.
    """
    require_linear_model(objective, "varpro-LM")
    x = np.array(x0, dtype=float)
    if x.shape != (objective.n_params,):
        raise ValueError(f"x0 has shape {x.shape}, expected ({objective.n_params},)")
    if int(sketch) != sketch or sketch < 0:
        raise ValueError(f"sketch must be a non-negative integer, got {sketch}")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    model = _ReducedModel(objective, x, int(sketch), ridge, rcond)
    return _run(model, x[model.radial], max_iter, gtol, xtol, ftol, time_limit, callback,
                _Damping(tau, max_lambda, False, 0.0, 0.0), resume)


class _ReducedModel:
    """Kaufman's least-squares model of L̃ for :func:`~mtpfit.optim.least_squares._run`."""

    def __init__(self, objective, x, sketch, ridge, rcond):
        self.objective, self.sketch, self.ridge, self.rcond = objective, sketch, ridge, rcond
        self.radial = objective.mtp.blocks["radial"]
        self.linear = _linear_slice(objective)
        self.moment = objective.mtp.blocks["moment"]
        self.reduced = ReducedLoss(objective, x, rcond=rcond, ridge=ridge)
        self.n_variables = self.radial.stop - self.radial.start
        self.builds = 0
        self._gradient = self._iterate = None
        self._counts = self._now()

    def _now(self):
        return self.objective.n_evaluations, self.objective.n_gauss_newton, self.objective.n_linear_systems

    def build(self, r):
        """(L̃, S, g_r) at r."""
        self.builds += 1
        value = self.reduced.fun(r)
        theta = self.reduced.theta(r)
        _, H, g = self.objective.gauss_newton(theta, sketch=self.sketch, seed=self.builds)
        if self.ridge:
            H[self.moment, self.moment] += self.ridge * np.eye(self.moment.stop - self.moment.start)
        self._gradient = 2.0 * g
        self._iterate = theta
        return value, kaufman_matrix(H, self.radial, self.linear, self.rcond), g[self.radial]

    def loss(self, r) -> float:
        return self.reduced.fun(r)

    def theta(self, r):
        # the θ of the last build, the current iterate: a fresh solve would move the reference of the next one
        # (after a rejected trial), so that reporting the iterate would change the trajectory
        if not np.array_equal(r, self._iterate[self.radial]):
            raise ValueError("the variable-projection model reports only its current iterate")
        return self._iterate.copy()

    def state(self) -> dict:
        """The sketch seed, the linear solves' state, ∇L and the pass counts, for a resume."""
        return {"builds": self.builds, "reduced": self.reduced.state(), "gradient": self._gradient,
                "iterate": self._iterate, "counts": [a - b for a, b in zip(self._now(), self._counts)]}

    def restore(self, state: dict) -> None:
        n = self.objective.n_params
        check_resume(state, {"builds": None, "reduced": None, "gradient": (n,), "iterate": (n,), "counts": (3,)},
                     "variable projection model")
        self.builds = int(state["builds"])
        self.reduced.restore(state["reduced"])
        self._gradient = np.asarray(state["gradient"], dtype=float)
        self._iterate = np.array(state["iterate"], dtype=float)
        self._counts = tuple(a - int(b) for a, b in zip(self._now(), state["counts"]))

    def result(self, r, fun, jac, **fields) -> OptimizationResult:
        passes, builds, solves = (a - b for a, b in zip(self._now(), self._counts))
        return OptimizationResult(x=self.theta(r), fun=fun, jac=self._gradient, nfev=passes, njev=builds,
                                  n_resolves=solves, **fields)


def kaufman_matrix(H: np.ndarray, radial, linear, rcond: float = 1e-12) -> np.ndarray:
    """The Schur complement S = H_rr − H_rl H_ll⁺ H_lr of the linear block of a Gauss–Newton matrix.

    Parameters
    ----------
    H : ndarray, shape (n_params, n_params)
        JᵀWJ (symmetric positive semi-definite), e.g. from :meth:`~mtpfit.objective.Objective.gauss_newton`.
    radial, linear : slice or ndarray of int
        Indices of the radial block and of the linear (species and moment) block of θ.
    rcond : float
        Eigenvalues of the diagonally equilibrated H_ll below ``rcond`` times the largest are treated as zero
        (the pseudo-inverse H_ll⁺): linear directions the data do not determine project out nothing.

    Returns
    -------
    ndarray, shape (n_radial, n_radial)
        S, symmetric positive semi-definite up to round-off: the Gauss–Newton matrix of the reduced loss in
        Kaufman's approximation (halved, as JᵀWJ is: ∇²L̃ ≈ 2S).
    """
    H = np.asarray(H, dtype=float)
    radial = np.arange(H.shape[0])[radial]
    linear = np.arange(H.shape[0])[linear]
    H_ll = H[np.ix_(linear, linear)]
    H_lr = H[np.ix_(linear, radial)]
    # equilibrate first: MTP columns span many decades, and an unscaled eigenvalue cut would drop real directions
    scale = np.sqrt(np.diag(H_ll))
    scale[scale == 0] = 1.0
    values, vectors = scipy.linalg.eigh(H_ll / np.outer(scale, scale))
    keep = values > rcond * max(float(values.max()), 0.0)
    B = (vectors[:, keep].T @ (H_lr / scale[:, None])) / np.sqrt(values[keep])[:, None]
    S = H[np.ix_(radial, radial)] - B.T @ B
    return 0.5 * (S + S.T)
