"""Alternating least squares over the cores of an ETN (a DMRG-style sweep), the tensor-network-native trainer.

The ETN's site energy V_i = ξ_{z_i} + (tensor train of the features) is multilinear in its cores
(:mod:`mtpfit.potential.etn`): with every other block fixed, each energy, force and PlusStress component is an
affine function of one core k together with the species coefficients ξ (ξ enters additively). The residuals r of the
loss L = Σ w r² are then affine in θ_b = (ξ, core k), r(θ_b + δ) = r + J_b δ exactly, and

    L(θ_b + δ) = L + 2 gᵀδ + δᵀHδ,   g = J_bᵀWr,   H = J_bᵀWJ_b,

holds without approximation: the Gauss–Newton normal equations of the block, H δ = −g, are its exact linear
least-squares problem. A sweep solves them core after core — 1 … d, the next sweep d … 1, as the alternating
sweeps of DMRG and of ALS for tensor trains (Holtz, Rohwedder & Schneider, SIAM J. Sci. Comput. 34, A683 (2012);
Oseledets, SIAM J. Sci. Comput. 33, 2295 (2011)) — then takes one damped Gauss–Newton (Levenberg–Marquardt) step on
the radial coefficients, in which the model is not linear. H and g are the exact JᵀWJ and JᵀWr of
:meth:`mtpfit.objective.Objective.gauss_newton` restricted to the block (not a sketch).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import scipy.linalg

from .result import OptimizationResult
from .state import ResumeError, check_resume

__all__ = ["als", "solve_core", "CoreSolve"]


class CoreSolve:
    """The outcome of one exact block solve (:func:`solve_core`).

    Attributes
    ----------
    x : ndarray, shape (n_params,)
        θ after the solve (the input θ when the solve was rejected).
    loss_before, loss_after : float
        L at the input θ and at ``x``.
    accepted : bool
        Whether the solved block lowered the loss (or kept it, to round-off); a solve that raised it is rejected.
    """

    def __init__(self, x, loss_before, loss_after, accepted):
        self.x, self.loss_before, self.loss_after, self.accepted = x, loss_before, loss_after, accepted


def _block_indices(objective, k: int) -> np.ndarray:
    blocks = objective.model.blocks
    return np.r_[np.arange(blocks["species"].start, blocks["species"].stop),
                 np.arange(blocks[f"core_{k}"].start, blocks[f"core_{k}"].stop)]


def _floored(diagonal: np.ndarray) -> np.ndarray:
    """The diagonal with its zero (untouched) entries raised to 1e-12 of its largest, so that a relative ridge also
    holds the directions no residual depends on at their current values."""
    return np.where(diagonal > 0, diagonal, max(float(diagonal.max(initial=0.0)), 1.0) * 1e-12)


def _solve(H: np.ndarray, g: np.ndarray, damping: np.ndarray) -> np.ndarray:
    """δ of (H + diag(damping)) δ = −g: Cholesky, else (a numerically indefinite matrix) the eigendecomposition
    without the non-positive eigenvalues."""
    A = H + np.diag(damping)
    try:
        return -scipy.linalg.cho_solve(scipy.linalg.cho_factor(A), g)
    except np.linalg.LinAlgError:
        values, vectors = scipy.linalg.eigh(A)
        keep = values > 1e-14 * max(float(values.max()), 0.0)
        return -vectors[:, keep] @ ((vectors[:, keep].T @ g) / values[keep])


def solve_core(objective, x, k: int, ridge: float = 1e-10) -> CoreSolve:
    """Set core k and the species coefficients ξ of an ETN to the minimiser of the loss with the rest of θ fixed.

    Solves (H + ridge·D) δ = −g over θ_b = (ξ, core k), H = J_bᵀWJ_b and g = J_bᵀWr the block's part of the
    exact Gauss–Newton quantities (:meth:`~mtpfit.objective.Objective.gauss_newton`), D = diag(H) (its zero
    entries raised to 1e-12 of its largest). The residuals are affine in θ_b (module docstring), so with
    ``ridge`` = 0 this is the exact least-squares minimiser; the ridge, relative to each diagonal entry, is a
    proximal (Levenberg–Marquardt-like) term that bounds the condition number of the system by about 1/ridge and
    holds the directions the data do not determine — the gauge of the tensor train (core k scaled by α and core
    k ± 1 by 1/α), channels no neighbour reaches — at their current values instead of letting them drift. After
    the solve ∂L/∂θ_b = −2·ridge·D δ, relative to the gradient before at most of the order of ridge × the
    condition number of H.

    Cost: one Gauss–Newton build (about (3N + 10) loss+gradient passes for N-atom configurations) and one residual
    pass for the loss after.

    Parameters
    ----------
    objective : Objective
        Of an :class:`~mtpfit.potential.etn.ETN`.
    x : ndarray, shape (n_params,)
    k : int
        The core, 1 … d.
    ridge : float
        The relative proximal term, ≥ 0.

    Returns
    -------
    CoreSolve
        A solve that would raise the loss (possible only through round-off, at a point already at the block's
        minimum) is rejected: ``x`` is then the input.

    Raises
    ------
    KeyError
        For a core the model does not have.
    """
    x = np.asarray(x, dtype=float)
    loss, H, g = objective.gauss_newton(x)
    index = _block_indices(objective, k)
    Hb, gb = H[np.ix_(index, index)], g[index]
    delta = _solve(Hb, gb, ridge * _floored(np.diag(Hb).copy()))
    trial = x.copy()
    trial[index] += delta
    new = _loss(objective, trial)
    if np.isfinite(new) and new <= loss:
        return CoreSolve(trial, float(loss), new, True)
    return CoreSolve(x.copy(), float(loss), float(loss), False)


def _loss(objective, x) -> float:
    r, w = objective.residuals(x)
    value = float(np.sum(w * r * r))
    return value if np.isfinite(value) else np.inf


class _RadialStep:
    """Levenberg–Marquardt on the radial block, with Marquardt's scaling (D the running maximum of the block's
    diagonal of JᵀWJ) and Nielsen's damping update (Madsen, Nielsen & Tingleff 2004, Alg. 3.16), as
    :func:`~mtpfit.optim.least_squares.levenberg_marquardt` over all of θ."""

    def __init__(self, tau, max_tries):
        self.lam, self.nu, self.D = float(tau), 2.0, None
        self.max_tries = max_tries

    def step(self, objective, x):
        """(x, loss, accepted, loss before) after at most ``max_tries`` trial steps, the first that lowers L."""
        loss, H, g = objective.gauss_newton(x)
        radial = objective.model.blocks["radial"]
        Hr, gr = H[radial, radial], g[radial]
        diagonal = np.diag(Hr).copy()
        self.D = diagonal if self.D is None else np.maximum(self.D, diagonal)
        D = _floored(self.D)
        for _ in range(self.max_tries):
            delta = _solve(Hr, gr, self.lam * D)
            predicted = -(2.0 * gr @ delta + delta @ Hr @ delta)
            trial = x.copy()
            trial[radial] += delta
            new = _loss(objective, trial)
            rho = (loss - new) / predicted if predicted > 0 else -1.0
            if np.isfinite(new) and rho > 0:
                self.lam *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                self.nu = 2.0
                return trial, new, True, float(loss)
            self.lam *= self.nu
            self.nu *= 2.0
        return x, float(loss), False, float(loss)


def als(objective, x0, sweeps: int = 20, ridge: float = 1e-10, tau: float = 1e-3, radial_tries: int = 8,
        ftol: float = 1e-10, time_limit: float | None = None, callback: Callable | None = None,
        resume: dict | None = None) -> OptimizationResult:
    r"""Train an ETN by alternating exact least-squares solves of its cores and damped Gauss–Newton radial steps.

    Sweep s solves core 1, 2, …, d in turn (each jointly with ξ, by :func:`solve_core`) when s is even and d, …, 1
    when s is odd (DMRG's back-and-forth sweeps), then tries up to ``radial_tries`` Levenberg–Marquardt steps on the
    radial coefficients, accepting the first that lowers the loss (gain ratio ϱ > 0; λ ← λ·max(1/3, 1 − (2ϱ − 1)³)
    on success, λ ← νλ, ν ← 2ν on failure, kept from sweep to sweep). Every accepted update lowers the loss, so the
    loss never increases from sweep to sweep. The method and the exactness of the block solves are in the module
    docstring.

    Cost per sweep: d + 1 Gauss–Newton builds (each about (3N + 10) loss+gradient passes for N-atom configurations,
    and an n_params² matrix) and d + (radial trials) residual passes; suited to ETNs of up to a few thousand
    parameters.

    Parameters
    ----------
    objective : Objective
        Of an :class:`~mtpfit.potential.etn.ETN`.
    x0 : ndarray, shape (n_params,)
        E.g. :meth:`ETN.init_params` with the species energies fitted
        (:func:`~mtpfit.train.initial.fit_species_energies`).
    sweeps : int
        Number of sweeps (the trainer's iterations).
    ridge : float
        Relative proximal term of each core solve (:func:`solve_core`).
    tau : float
        Initial damping of the radial steps, relative to each diagonal entry.
    radial_tries : int
        Trial radial steps per sweep, ≥ 1.
    ftol : float
        Stop when a sweep lowers L by less than ftol·L.
    time_limit : float, optional
        Wall-time budget (s, counting the time before a resume), checked before every core solve after a sweep's
        first (each costs a JᵀWJ build): a sweep cut short by it ends without its radial step (its history row
        says how many cores it solved) and the run stops.
    callback : callable, optional
        ``callback(intermediate_result)`` after every sweep (``x``, ``fun``, ``nit`` and ``state``, a function
        returning the run's resumable state); raising StopIteration stops the run.
    resume : dict, optional
        A ``state`` from the callback: the run continues from that sweep (θ, damping, counters, history) on the
        trajectory of an uninterrupted run with the same settings; ``sweeps`` may be larger than the saved run's.

    Returns
    -------
    OptimizationResult
        ``x``, ``fun``, ``nit`` (sweeps), ``nfev`` (residual passes), ``njev`` (JᵀWJ builds), ``success``,
        ``message``, ``history`` (per sweep: ``iteration``, ``loss``, ``loss_after_cores``, ``rejected_cores``,
        ``radial_accepted``, ``lambda``, ``direction``, ``elapsed_s``), ``wall_time``.

    Raises
    ------
    TypeError
        For a model without cores (an MTP: its linear coefficients are solved exactly by variable projection,
        ``varpro`` and ``varpro-LM``).
    ValueError
        For a wrong shape of x0, invalid settings or a non-finite loss at x0.
    ResumeError
        If ``resume`` does not fit (shapes, a sweep beyond ``sweeps``).
    """
    model = objective.model
    if "core_1" not in model.blocks:
        raise TypeError(f"als sweeps over the cores of a tensor-network model (an ETN); {type(model).__name__} has "
                        "none (for an MTP, varpro and varpro-LM solve its linear coefficients exactly)")
    x = np.array(x0, dtype=float)
    if x.shape != (objective.n_params,):
        raise ValueError(f"x0 has shape {x.shape}, expected ({objective.n_params},)")
    for name, value, low in (("sweeps", sweeps, 0), ("radial_tries", radial_tries, 1)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    for name, value in (("ridge", ridge), ("tau", tau), ("ftol", ftol)):
        if not 0.0 <= value < np.inf:
            raise ValueError(f"{name} must be non-negative and finite, got {value!r}")
    d = int(model.core.copies)
    radial = _RadialStep(tau, int(radial_tries))
    start = time.perf_counter()
    counts = objective.n_residual_passes, objective.n_gauss_newton
    if resume is None:
        loss = _loss(objective, x)
        if not np.isfinite(loss):
            raise ValueError(f"the loss at x0 is {loss}")
        history, nit = [], 0
    else:
        check_resume(resume, {"x": (objective.n_params,), "loss": None, "nit": None, "history": None,
                              "elapsed_s": None, "lam": None, "nu": None, "D": None, "nfev": None, "njev": None},
                     "als")
        nit, history = resume["nit"], list(resume["history"])
        if not isinstance(nit, int) or not 0 <= nit <= sweeps or len(history) != nit:
            raise ResumeError(f"als: the saved run is at sweep {nit!r} (with {len(history)} history rows), outside "
                              f"the {sweeps} sweeps of this run")
        x, loss = np.array(resume["x"], dtype=float), float(resume["loss"])
        radial.lam, radial.nu = float(resume["lam"]), float(resume["nu"])
        radial.D = None if np.size(resume["D"]) == 0 else np.array(resume["D"], dtype=float)
        start -= float(resume["elapsed_s"])
        counts = (objective.n_residual_passes - int(resume["nfev"]), objective.n_gauss_newton - int(resume["njev"]))
    message, success = f"sweeps = {sweeps} done", False
    while nit < sweeps:
        before = loss
        order = range(1, d + 1) if nit % 2 == 0 else range(d, 0, -1)
        rejected, solved_cores = 0, 0
        for k in order:
            # a block solve costs a whole JᵀWJ build: the budget is checked before each, so a sweep may end early
            if time_limit is not None and solved_cores and time.perf_counter() - start >= time_limit:
                break
            solved = solve_core(objective, x, k, ridge)
            x, loss = solved.x, solved.loss_after
            rejected += not solved.accepted
            solved_cores += 1
        after_cores = loss
        partial = solved_cores < d
        accepted = False
        if not partial:
            x, loss, accepted, _ = radial.step(objective, x)
        nit += 1
        elapsed = time.perf_counter() - start
        history.append({"iteration": nit, "loss": loss, "loss_after_cores": after_cores, "rejected_cores": rejected,
                        "radial_accepted": accepted, "lambda": radial.lam, "cores_solved": solved_cores,
                        "direction": "forward" if (nit - 1) % 2 == 0 else "backward", "elapsed_s": elapsed})
        stop = False
        if not partial and before - loss <= ftol * before:
            message, success, stop = f"relative loss decrease over a sweep ≤ {ftol:g}", True, True
        if callback is not None:
            # x is replaced, never modified, by the loop: the snapshot holds a reference
            snapshot = {"x": x, "loss": float(loss), "nit": nit, "history": list(history), "elapsed_s": elapsed,
                        "lam": radial.lam, "nu": radial.nu, "D": np.zeros(0) if radial.D is None else radial.D,
                        "nfev": objective.n_residual_passes - counts[0], "njev": objective.n_gauss_newton - counts[1]}
            try:
                callback(OptimizationResult(x=x.copy(), fun=float(loss), nit=nit, state=lambda: snapshot))
            except StopIteration:
                message, stop = "stopped by the callback", True
        if time_limit is not None and elapsed >= time_limit:
            message, stop = f"wall-time budget of {time_limit:g} s reached", True
        if stop:
            break
    return OptimizationResult(x=x, fun=float(loss), nit=nit, nfev=objective.n_residual_passes - counts[0],
                              njev=objective.n_gauss_newton - counts[1], success=success, message=message,
                              history=history, wall_time=time.perf_counter() - start)
