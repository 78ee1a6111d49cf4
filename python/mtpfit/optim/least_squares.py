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
from .state import ResumeError, check_resume

__all__ = ["levenberg_marquardt", "gauss_newton", "LEAST_SQUARES_METHODS"]


def levenberg_marquardt(objective, x0, max_iter: int = 100, tau: float = 1e-3, gtol: float = 1e-10,
                        xtol: float = 1e-12, ftol: float = 1e-10, geodesic: bool = False,
                        geodesic_alpha: float = 0.75, geodesic_h: float = 0.1, max_lambda: float = 1e16,
                        sketch: int = 0, time_limit: float | None = None,
                        callback: Callable | None = None, resume: dict | None = None) -> OptimizationResult:
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
        Wall-time budget (s, counting the time before a resume), checked after every iteration.
    callback : callable, optional
        ``callback(intermediate_result)`` after every iteration (``x``, ``fun``, ``nit`` and ``state``, a
        function returning the run's resumable state); raising StopIteration stops the run.
    resume : dict, optional
        A ``state`` from the callback: the run continues from that iteration (θ, JᵀWJ and gradient, damping,
        sketch seed, counters, history) on the trajectory of an uninterrupted run with the same settings;
        ``max_iter`` may be larger than the saved run's.

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
    ResumeError
        If ``resume`` does not fit (shapes, an iteration beyond ``max_iter``).
    """
    return _run(_FullLoss(objective, sketch), x0, max_iter, gtol, xtol, ftol, time_limit, callback,
                _Damping(tau, max_lambda, geodesic, geodesic_alpha, geodesic_h), resume)


def gauss_newton(objective, x0, max_iter: int = 100, gtol: float = 1e-10, xtol: float = 1e-12, ftol: float = 1e-10,
                 rcond: float = 1e-12, c1: float = 1e-4, max_backtrack: int = 30, time_limit: float | None = None,
                 callback: Callable | None = None, resume: dict | None = None) -> OptimizationResult:
    r"""Gauss–Newton with a backtracking (Armijo) line search.

    The direction solves H δ = −g in the least-squares sense (eigenvalues of H below ``rcond``·max are dropped:
    the MTP loss has exact symmetries, e.g. the scale shared by radial and moment coefficients, that make H
    singular); the step α δ halves α from 1 until L(θ + αδ) ≤ L(θ) + 2 c₁ α gᵀδ (Nocedal & Wright 2006, §10.3).

    Parameters and the result are those of :func:`levenberg_marquardt` (``history`` rows carry ``alpha``).
    """
    return _run(_FullLoss(objective, 0), x0, max_iter, gtol, xtol, ftol, time_limit, callback,
                _LineSearch(rcond, c1, max_backtrack), resume)


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

    def state(self) -> dict:
        return {"lam": self.lam, "nu": self.nu, "D": self.D}

    def restore(self, state: dict) -> None:
        check_resume(state, {"lam": None, "nu": None, "D": None}, "Levenberg-Marquardt damping")
        self.lam, self.nu, self.D = state["lam"], float(state["nu"]), state["D"]

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

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass


class _FullLoss:
    """The least-squares model of the loss over all of θ: JᵀWJ from the core, the loss from one residual pass."""

    def __init__(self, objective, sketch):
        self.objective, self.sketch = objective, sketch
        self.n_variables = objective.n_params
        self.builds = 0
        self._counts = objective.n_residual_passes, objective.n_gauss_newton

    def build(self, x):
        """(L, JᵀWJ, JᵀWr) at x; a sketched JᵀWJ is redrawn at every build."""
        self.builds += 1
        return self.objective.gauss_newton(x, sketch=self.sketch, seed=self.builds)

    def loss(self, x) -> float:
        r, w = self.objective.residuals(x)
        return float(np.sum(w * r * r))

    def theta(self, x):
        return x.copy()

    def state(self) -> dict:
        """The sketch seed and the pass counts, for a resume."""
        return {"builds": self.builds, "nfev": self.objective.n_residual_passes - self._counts[0],
                "njev": self.objective.n_gauss_newton - self._counts[1]}

    def restore(self, state: dict) -> None:
        check_resume(state, {"builds": None, "nfev": None, "njev": None}, "least-squares model")
        self.builds = int(state["builds"])
        self._counts = (self.objective.n_residual_passes - int(state["nfev"]),
                        self.objective.n_gauss_newton - int(state["njev"]))

    def result(self, x, fun, jac, **fields) -> OptimizationResult:
        return OptimizationResult(x=x, fun=fun, jac=jac, nfev=self.objective.n_residual_passes - self._counts[0],
                                  njev=self.objective.n_gauss_newton - self._counts[1], **fields)


def _run(model, x0, max_iter, gtol, xtol, ftol, time_limit, callback, rule, resume=None) -> OptimizationResult:
    """The iteration shared by every least-squares trainer: ``model.build(x)`` gives (L, H, g) of the Gauss–Newton
    model L(x + δ) ≈ L + 2gᵀδ + δᵀHδ, ``model.loss(x)`` the loss at a trial point, ``rule`` the step rule.

    The callback's ``state`` holds the iterate, H, g, counters, history and ``rule.state()`` and
    ``model.state()``; ``resume`` (such a state) continues from it through ``rule.restore`` and
    ``model.restore``."""
    start = time.perf_counter()
    x = np.array(x0, dtype=float)
    if x.shape != (model.n_variables,):
        raise ValueError(f"x0 has shape {x.shape}, expected ({model.n_variables},)")
    objective, build, loss_at = model.objective, model.build, model.loss
    if resume is None:
        loss, H, g = build(x)
        if not np.isfinite(loss):
            raise ValueError(f"the loss at x0 is {loss}")
        history, nit = [], 0
    else:
        x, loss, H, g, history, nit, elapsed = _resumed(resume, model, rule, max_iter)
        start -= elapsed
    message, success = f"max_iter = {max_iter} reached", False
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
            fields = {}
            if hasattr(model, "state"):     # a model without state()/restore() gives a run that cannot resume
                # H, g and x are replaced, never modified, by the loop: the snapshot holds references
                snapshot = {"nit": nit, "history": list(history), "elapsed_s": history[-1]["elapsed_s"], "x": x,
                            "loss": float(loss), "H": H, "g": g, "rule": rule.state(), "model": model.state()}
                fields["state"] = lambda: snapshot
            try:
                callback(OptimizationResult(x=model.theta(x), fun=loss, nit=nit, **fields))
            except StopIteration:
                stop, message = True, "stopped by the callback"
        if time_limit is not None and history[-1]["elapsed_s"] >= time_limit:
            stop, message = True, f"wall-time budget of {time_limit:g} s reached"
        if stop:
            break
    return model.result(x, loss, 2.0 * g, nit=nit, success=success, message=message, history=history,
                        wall_time=time.perf_counter() - start)


def _resumed(state, model, rule, max_iter):
    """(x, loss, H, g, history, nit, elapsed) of a saved least-squares iterate, with the rule and model restored."""
    n = model.n_variables
    check_resume(state, {"x": (n,), "loss": None, "H": (n, n), "g": (n,), "nit": None, "history": None,
                         "elapsed_s": None, "rule": None, "model": None}, "least squares")
    nit, history = state["nit"], list(state["history"])
    if not isinstance(nit, int) or not 0 <= nit <= max_iter or len(history) != nit:
        raise ResumeError(f"least squares: the saved run is at iteration {nit!r} (with {len(history)} history rows), "
                          f"outside the {max_iter} iterations of this run")
    rule.restore(state["rule"])
    model.restore(state["model"])
    return (np.array(state["x"], dtype=float), float(state["loss"]), np.array(state["H"]), np.array(state["g"]),
            history, nit, float(state["elapsed_s"]))


#: Second-order trainers by the names the command line and campaigns use.
LEAST_SQUARES_METHODS = {"LM": levenberg_marquardt, "GN": gauss_newton}
