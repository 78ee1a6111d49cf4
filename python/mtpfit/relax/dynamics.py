"""Relaxation rules at fixed cell, each one step X_t → X_{t+1} given the forces F(X_t), with the vector–Jacobian
product of that step for backpropagation through time.

A rule's state is a dict (positions ``X`` and whatever else the rule carries); ``step`` returns the next state
and a record of the step, and ``vjp(record, cotangent)`` maps the cotangent of the next state to the cotangent
of the previous state and of the forces used. The discrete decisions of a step (which atom limits the step,
FIRE's velocity reset and time-step changes) are held fixed, so the derivative is exact wherever they do not
change under an infinitesimal change of θ, i.e. almost everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GradientDescent", "FIRE", "capped_step"]


def capped_step(u: np.ndarray, max_step: float) -> tuple[np.ndarray, float, int]:
    """``u`` scaled so that no atom moves more than ``max_step``.

    Parameters
    ----------
    u : ndarray, shape (N, 3)
        Proposed displacements, Å.
    max_step : float
        Largest displacement of any atom, Å.

    Returns
    -------
    step : ndarray, shape (N, 3)
        s·u with s = min(1, max_step / max_i |u_i|).
    s : float
    m : int
        The atom with the largest proposed displacement.
    """
    norms = np.linalg.norm(u, axis=1)
    m = int(np.argmax(norms))
    s = max_step / norms[m] if norms[m] > max_step else 1.0
    return s * u, float(s), m


def _capped_step_vjp(u: np.ndarray, s: float, m: int, cotangent: np.ndarray) -> np.ndarray:
    """Cotangent of u given that of s(u)·u; s = max_step/|u_m| when the cap is active, so
    ∂s/∂u_m = −s u_m / |u_m|²."""
    out = s * cotangent
    if s < 1.0:
        out[m] -= np.sum(cotangent * u) * s * u[m] / np.dot(u[m], u[m])
    return out


@dataclass(frozen=True)
class GradientDescent:
    """X ← X + cap(η F(X)): steepest descent on the energy with a fixed step length η.

    Parameters
    ----------
    eta : float
        Å²/eV. Stable for η < 2/λ_max, λ_max the largest eigenvalue of the energy's Hessian in the positions
        (eV/Å²; about 10–30 for covalent solids).
    max_step : float
        No atom moves more than this per step, Å.
    """

    eta: float = 0.02
    max_step: float = 0.2

    def __post_init__(self):
        if not (self.eta > 0 and self.max_step > 0):
            raise ValueError(f"gradient descent needs eta > 0 and max_step > 0, got {self.eta}, {self.max_step}")

    def init(self, positions: np.ndarray) -> dict:
        """The state at ``positions`` (N, 3), Å."""
        return {"X": np.array(positions, dtype=float)}

    def step(self, state: dict, forces: np.ndarray) -> tuple[dict, tuple]:
        """The next state given the forces (N, 3), eV/Å, at ``state["X"]``, and the record :meth:`vjp` needs."""
        u = self.eta * forces
        dr, s, m = capped_step(u, self.max_step)
        return {"X": state["X"] + dr}, (u, s, m)

    def vjp(self, record: tuple, cotangent: dict) -> tuple[dict, np.ndarray]:
        """Cotangents of the previous state and of the forces, given the next state's (``{"X": (N, 3)}``)."""
        u, s, m = record
        return {"X": cotangent["X"].copy()}, self.eta * _capped_step_vjp(u, s, m, cotangent["X"])


@dataclass(frozen=True)
class FIRE:
    """The fast inertial relaxation engine (Bitzek et al., Phys. Rev. Lett. 97, 170201 (2006)) in the form of
    ASE's ``FIRE`` (unit masses; the first step is a plain Euler step), with a per-atom step cap.

    Each step: if F·v > 0, v ← (1 − α)v + α|v|F/|F| and, after ``n_min`` such steps in a row, Δt ← min(f_inc Δt,
    Δt_max), α ← f_α α; otherwise v ← 0, α ← α_start, Δt ← f_dec Δt. Then v ← v + Δt F and X ← X + cap(Δt v).
    With a cap that never acts the trajectory is ASE's (ASE caps the norm of the whole displacement instead).

    Parameters
    ----------
    dt, dt_max : float
        Initial and largest time step (ASE's units: the displacement per step is Δt·v, v gaining Δt·F).
    max_step : float
        No atom moves more than this per step, Å.
    n_min : int
    f_inc, f_dec, alpha_start, f_alpha : float
        Bitzek et al.'s defaults.
    """

    dt: float = 0.1
    max_step: float = 0.2
    dt_max: float = 1.0
    n_min: int = 5
    f_inc: float = 1.1
    f_dec: float = 0.5
    alpha_start: float = 0.1
    f_alpha: float = 0.99

    def __post_init__(self):
        if not (self.dt > 0 and self.max_step > 0 and self.dt_max >= self.dt):
            raise ValueError(f"FIRE needs dt > 0, max_step > 0 and dt_max ≥ dt, got {self.dt}, {self.max_step}, "
                             f"{self.dt_max}")

    def init(self, positions: np.ndarray) -> dict:
        """The state at ``positions`` (N, 3), Å, at rest."""
        X = np.array(positions, dtype=float)
        return {"X": X, "v": np.zeros_like(X), "dt": self.dt, "alpha": self.alpha_start, "n": 0, "started": False}

    def step(self, state: dict, forces: np.ndarray) -> tuple[dict, tuple]:
        """The next state given the forces (N, 3), eV/Å, at ``state["X"]``, and the record :meth:`vjp` needs."""
        v, dt, alpha, n = state["v"], state["dt"], state["alpha"], state["n"]
        mode, mix = "euler", None
        if state["started"]:
            if np.sum(forces * v) > 0.0:
                f_norm, v_norm = np.linalg.norm(forces), np.linalg.norm(v)
                mode, mix = "mix", (alpha, f_norm, v_norm)
                v = (1.0 - alpha) * v + alpha * v_norm / f_norm * forces
                if n > self.n_min:
                    dt = min(dt * self.f_inc, self.dt_max)
                    alpha *= self.f_alpha
                n += 1
            else:
                mode = "reset"
                v = np.zeros_like(v)
                alpha, dt, n = self.alpha_start, dt * self.f_dec, 0
        v = v + dt * forces
        u = dt * v
        dr, s, m = capped_step(u, self.max_step)
        new = {"X": state["X"] + dr, "v": v, "dt": dt, "alpha": alpha, "n": n, "started": True}
        return new, (mode, mix, state["v"], forces, dt, u, s, m)

    def vjp(self, record: tuple, cotangent: dict) -> tuple[dict, np.ndarray]:
        """Cotangents of the previous state and of the forces, given the next state's (``{"X", "v"}``, (N, 3))."""
        mode, mix, v_old, forces, dt, u, s, m = record
        v_bar = cotangent["v"] + dt * _capped_step_vjp(u, s, m, cotangent["X"])
        f_bar = dt * v_bar
        if mode == "mix":
            alpha, f_norm, v_norm = mix
            f_hat = forces / f_norm
            along = np.sum(v_bar * f_hat)
            f_bar = f_bar + alpha * v_norm / f_norm * (v_bar - along * f_hat)
            v_prev = (1.0 - alpha) * v_bar + alpha * along * v_old / v_norm
        elif mode == "reset":
            v_prev = np.zeros_like(v_bar)
        else:
            v_prev = v_bar
        return {"X": cotangent["X"].copy(), "v": v_prev}, f_bar
