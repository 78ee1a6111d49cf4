"""Second-order training of the sum-of-squares loss: Levenberg–Marquardt and Gauss–Newton.

The MTP loss is L(θ) = Σ w r(θ)² over energies, force components and PlusStress components (plus the radial
penalty, itself a sum of squares). Both trainers use the Gauss–Newton model

    L(θ + δ) ≈ L + 2 gᵀδ + δᵀHδ,   g = JᵀWr,   H = JᵀWJ,

built by :meth:`mtpfit.objective.Objective.gauss_newton` without storing J.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import scipy.linalg

from .result import OptimizationResult

__all__ = ["levenberg_marquardt", "gauss_newton", "LEAST_SQUARES_METHODS"]


def levenberg_marquardt(objective, x0, max_iter: int = 100, tau: float = 1e-3, gtol: float = 1e-10,
                        xtol: float = 1e-12, ftol: float = 1e-10, geodesic: bool = False,
                        geodesic_alpha: float = 0.75, geodesic_h: float = 0.1, max_lambda: float = 1e16,
                        sketch: int = 0, time_limit: float | None = None,
                        callback: Callable | None = None) -> OptimizationResult:
    r"""Levenberg–Marquardt with Marquardt's scaling and Nielsen's damping update.

    Each iteration solves (H + λD) δ = −g by Cholesky, D the running maximum of diag(H) (Moré 1978), and
    accepts θ + δ when the gain ratio ϱ = (L(θ) − L(θ + δ)) / (L(θ) − L_model(θ + δ)) is positive; then
    λ ← λ·max(1/3, 1 − (2ϱ − 1)³), otherwise λ ← νλ and ν ← 2ν (Madsen, Nielsen & Tingleff 2004,
    *Methods for non-linear least squares problems*, Alg. 3.16; Nielsen 1999). The start is λ₀ = τ: with the
    damping scaled by D, λ is relative to each diagonal entry (Madsen et al.'s λ₀ = τ·max diag(H) belongs to the
    unscaled damping λI; with D it would damp every direction by up to τ·max diag / diag, which on an MTP — diagonal
    entries spanning many decades — makes the first steps vanish).

    Parameters
    ----------
    objective : Objective
        The loss; needs :meth:`~mtpfit.objective.Objective.gauss_newton` and
        :meth:`~mtpfit.objective.Objective.residuals`.
    x0 : ndarray, shape (n_params,)
    max_iter : int
        Iterations (accepted or rejected steps; each builds JᵀWJ only after an accepted one).
    tau : float
        Initial damping λ₀, relative to each diagonal entry of JᵀWJ (Marquardt's scaling).
    gtol : float
        Stop when ‖∇L‖_∞ ≤ gtol.
    xtol : float
        Stop when ‖δ‖ ≤ xtol (‖θ‖ + xtol).
    ftol : float
        Stop when an accepted step lowers L by less than ftol·L.
    geodesic : bool
        Add the geodesic acceleration a = −(H + λD)⁻¹ JᵀW r_vv, r_vv the second directional derivative of the
        residuals along δ (central difference with step ``geodesic_h``·δ, two energy+forces passes and one
        reverse pass), take δ + a/2, and reject steps with 2‖a‖_D/‖δ‖_D > ``geodesic_alpha``
        (Transtrum & Sethna 2012, arXiv:1201.5885).
    max_lambda : float
        Stop when λ grows past this (no descent found).
    sketch : int
        0: the exact JᵀWJ. k > 0: a random sketch of k rows per configuration, redrawn at every build
        (:meth:`~mtpfit.objective.Objective.gauss_newton`); the gradient and the gain ratio stay exact, so the
        damping still guards every step. About (3N + 10)/(k + 1) times cheaper for N-atom configurations; the
        convergence near a minimum becomes linear (exact: quadratic on zero-residual problems), so a sketched run
        suits large sets and early iterations, followed by exact ones if needed.
    time_limit : float, optional
        Wall-time budget (s), checked after every iteration.
    callback : callable, optional
        ``callback(intermediate_result)`` after every iteration; raising StopIteration stops the run.

    Returns
    -------
    OptimizationResult
        ``x``, ``fun``, ``jac`` (∇L = 2g at x), ``nit``, ``nfev`` (loss evaluations: energy+forces passes of
        :meth:`~mtpfit.objective.Objective.residuals`), ``njev`` (JᵀWJ builds), ``success``, ``message``,
        ``history`` (``iteration``, ``loss``, ``lambda``, ``accepted``, ``rho``, ``elapsed_s``), ``wall_time``.

    Raises
    ------
    ValueError
        If x0 has the wrong shape or the loss at x0 is not finite.
    """
    return _run(objective, x0, max_iter, gtol, xtol, ftol, time_limit, callback,
                _Damping(tau, max_lambda, geodesic, geodesic_alpha, geodesic_h), sketch)


def gauss_newton(objective, x0, max_iter: int = 100, gtol: float = 1e-10, xtol: float = 1e-12, ftol: float = 1e-10,
                 rcond: float = 1e-12, c1: float = 1e-4, max_backtrack: int = 30, time_limit: float | None = None,
                 callback: Callable | None = None) -> OptimizationResult:
    r"""Gauss–Newton with a backtracking (Armijo) line search.

    The direction solves H δ = −g in the least-squares sense (eigenvalues of H below ``rcond``·max are dropped:
    the MTP loss has exact symmetries, e.g. the scale shared by radial and moment coefficients, that make H
    singular); the step α δ halves α from 1 until L(θ + αδ) ≤ L(θ) + 2 c₁ α gᵀδ (Nocedal & Wright 2006, §10.3).

    Parameters and the result are those of :func:`levenberg_marquardt` (``history`` rows carry ``alpha``).
    """
    return _run(objective, x0, max_iter, gtol, xtol, ftol, time_limit, callback, _LineSearch(rcond, c1, max_backtrack),
                0)


class _Damping:
    """Levenberg–Marquardt's step rule."""

    def __init__(self, tau, max_lambda, geodesic, alpha, h):
        self.tau, self.max_lambda = tau, max_lambda
        self.geodesic, self.alpha, self.h = geodesic, alpha, h
        self.lam = self.D = None
        self.nu = 2.0

    def step(self, objective, x, loss, H, g, loss_at):
        diag = np.diag(H).copy()
        self.D = diag if self.D is None else np.maximum(self.D, diag)
        D = np.where(self.D > 0, self.D, max(float(self.D.max()), 1.0) * 1e-12)
        if self.lam is None:
            self.lam = self.tau
        while self.lam <= self.max_lambda:
            try:
                factor = scipy.linalg.cho_factor(H + self.lam * np.diag(D))
            except np.linalg.LinAlgError:
                self._reject()
                continue
            delta = -scipy.linalg.cho_solve(factor, g)
            predicted = -(2.0 * g @ delta + delta @ H @ delta)
            info = {"lambda": self.lam}
            if self.geodesic:
                a = self._acceleration(objective, x, delta, factor)
                ratio = 2.0 * np.sqrt((a * a) @ D) / max(np.sqrt((delta * delta) @ D), 1e-300)
                info["acceleration_ratio"] = ratio
                if ratio > self.alpha:
                    self._reject()
                    return None, {**info, "accepted": False, "rho": np.nan}
                delta = delta + 0.5 * a
                predicted = -(2.0 * g @ delta + delta @ H @ delta)
            new = loss_at(x + delta)
            rho = (loss - new) / predicted if predicted > 0 else -1.0
            info.update(rho=rho)
            if np.isfinite(new) and rho > 0:
                self.lam *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                self.nu = 2.0
                return (x + delta, new, delta), {**info, "accepted": True}
            self._reject()
            return None, {**info, "accepted": False}
        return "stop", {"lambda": self.lam, "accepted": False, "rho": np.nan}

    def _reject(self):
        self.lam *= self.nu
        self.nu *= 2.0

    def _acceleration(self, objective, x, delta, factor):
        h = self.h
        r0, w = objective.residuals(x)
        rp = objective.residuals(x + h * delta)[0]
        rm = objective.residuals(x - h * delta)[0]
        r_vv = (rp - 2.0 * r0 + rm) / (h * h)
        return -scipy.linalg.cho_solve(factor, objective.residual_vjp(x, w * r_vv))

    def stop_message(self):
        return f"damping λ = {self.lam:.3g} exceeds {self.max_lambda:g}: no descent step found"


class _LineSearch:
    """Gauss–Newton's step rule."""

    def __init__(self, rcond, c1, max_backtrack):
        self.rcond, self.c1, self.max_backtrack = rcond, c1, max_backtrack

    def step(self, objective, x, loss, H, g, loss_at):
        values, vectors = scipy.linalg.eigh(H)
        keep = values > self.rcond * max(float(values.max()), 0.0)
        delta = -vectors[:, keep] @ ((vectors[:, keep].T @ g) / values[keep])
        slope = 2.0 * g @ delta
        alpha = 1.0
        for _ in range(self.max_backtrack):
            new = loss_at(x + alpha * delta)
            if np.isfinite(new) and new <= loss + self.c1 * alpha * slope:
                return (x + alpha * delta, new, alpha * delta), {"alpha": alpha, "accepted": True}
            alpha *= 0.5
        return "stop", {"alpha": alpha, "accepted": False}

    def stop_message(self):
        return f"line search failed after {self.max_backtrack} halvings"


def _run(objective, x0, max_iter, gtol, xtol, ftol, time_limit, callback, rule, sketch) -> OptimizationResult:
    start = time.perf_counter()
    x = np.array(x0, dtype=float)
    if x.shape != (objective.n_params,):
        raise ValueError(f"x0 has shape {x.shape}, expected ({objective.n_params},)")
    nfev_before, njev_before = objective.n_residual_passes, objective.n_gauss_newton

    def loss_at(theta):
        r, w = objective.residuals(theta)
        return float(np.sum(w * r * r))

    builds = [0]

    def build(theta):
        builds[0] += 1
        return objective.gauss_newton(theta, sketch=sketch, seed=builds[0])

    loss, H, g = build(x)
    if not np.isfinite(loss):
        raise ValueError(f"the loss at x0 is {loss}")
    history, message, success, nit = [], f"max_iter = {max_iter} reached", False, 0
    while nit < max_iter:
        if np.max(np.abs(2.0 * g)) <= gtol:
            message, success = f"gradient ‖∇L‖∞ ≤ {gtol:g}", True
            break
        outcome, info = rule.step(objective, x, loss, H, g, loss_at)
        nit += 1
        if isinstance(outcome, str):
            message = rule.stop_message()
            history.append({"iteration": nit, "loss": loss, **info, "elapsed_s": time.perf_counter() - start})
            break
        converged = None
        if outcome is not None:
            x_new, new, delta = outcome
            if np.linalg.norm(delta) <= xtol * (np.linalg.norm(x) + xtol):
                converged = f"step ‖δ‖ ≤ {xtol:g} (‖θ‖ + {xtol:g})"
            elif loss - new <= ftol * loss:
                converged = f"relative loss decrease ≤ {ftol:g}"
            x = x_new
            loss, H, g = build(x)
        history.append({"iteration": nit, "loss": loss, **info, "elapsed_s": time.perf_counter() - start})
        if converged:
            message, success = converged, True
            break
        stop = False
        if callback is not None:
            try:
                callback(OptimizationResult(x=x.copy(), fun=loss, nit=nit))
            except StopIteration:
                stop, message = True, "stopped by the callback"
        if time_limit is not None and history[-1]["elapsed_s"] >= time_limit:
            stop, message = True, f"wall-time budget of {time_limit:g} s reached"
        if stop:
            break
    return OptimizationResult(x=x, fun=loss, jac=2.0 * g, nit=nit, nfev=objective.n_residual_passes - nfev_before,
                              njev=objective.n_gauss_newton - njev_before, success=success, message=message,
                              history=history, wall_time=time.perf_counter() - start)


#: Second-order trainers by the names the command line and campaigns use.
LEAST_SQUARES_METHODS = {"LM": levenberg_marquardt, "GN": gauss_newton}
