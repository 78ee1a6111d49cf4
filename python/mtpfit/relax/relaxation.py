"""Structural relaxation with an MTP at fixed cell, and the same relaxation unrolled over k steps with its exact
gradient in θ by backpropagation through time (Dramko et al., arXiv:2512.01067)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.configuration import Configuration
from ..potential.mtp import MTP
from .displacement import displacement_rmsd

__all__ = ["Relaxation", "relax", "unrolled_relaxation"]


@dataclass
class Relaxation:
    """A relaxation trajectory's end point.

    Attributes
    ----------
    positions : ndarray, shape (N, 3)
        Final positions, Å.
    energies : list of float
        Energy (eV) at every evaluated point, the start included.
    fmax : list of float
        Largest per-atom force norm (eV/Å) at every evaluated point.
    steps : int
        Steps taken.
    converged : bool
        Whether the largest force fell below the requested ``fmax``.
    """

    positions: np.ndarray
    energies: list = field(default_factory=list)
    fmax: list = field(default_factory=list)
    steps: int = 0
    converged: bool = False


def _at(config: Configuration, positions: np.ndarray, step: int) -> Configuration:
    """``config`` moved to ``positions``, its labels dropped."""
    return Configuration(positions, config.species, config.cell, config.pbc,
                         source=f"{config.source}, relaxation step {step}")


def _evaluate(mtp: MTP, theta: np.ndarray, config: Configuration, positions: np.ndarray, step: int):
    """(structure, energy, forces) at ``positions``; raises FloatingPointError on non-finite forces."""
    from .. import _core

    structure = mtp.structure(_at(config, positions, step))
    site, forces, _ = _core.evaluate(mtp.basis.core, theta, structure)
    if not np.all(np.isfinite(forces)):
        raise FloatingPointError(f"{config.source}: non-finite forces at relaxation step {step}")
    return structure, float(site.sum()), forces


def relax(mtp: MTP, config: Configuration, rule, steps: int = 1000, fmax: float | None = 1e-3,
          theta: np.ndarray | None = None) -> Relaxation:
    """Relax the atomic positions of ``config`` at fixed cell.

    Parameters
    ----------
    mtp : MTP
    config : Configuration
        The start.
    rule : GradientDescent or FIRE
        From :mod:`mtpfit.relax.dynamics`.
    steps : int
        Largest number of steps.
    fmax : float or None
        Stop once every atom's force norm is below this (eV/Å); ``None`` takes exactly ``steps`` steps.
    theta : ndarray, optional
        Parameters; the potential's own by default.

    Returns
    -------
    Relaxation

    Raises
    ------
    ValueError
        If atoms come closer than 0.1 Å (the message names the configuration and step).
    FloatingPointError
        If the forces become non-finite.
    """
    theta = mtp.theta if theta is None else theta
    state = rule.init(config.positions)
    out = Relaxation(positions=state["X"])
    for t in range(steps + 1):
        _, energy, forces = _evaluate(mtp, theta, config, state["X"], t)
        out.energies.append(energy)
        out.fmax.append(float(np.linalg.norm(forces, axis=1).max()))
        if fmax is not None and out.fmax[-1] < fmax:
            out.converged = True
            break
        if t == steps:
            break
        state, _ = rule.step(state, forces)
        out.steps = t + 1
    out.positions = state["X"]
    return out


def unrolled_relaxation(mtp: MTP, theta: np.ndarray, start: Configuration, target: Configuration, rule, k: int,
                        gradient: bool = True) -> tuple[float, np.ndarray | None, np.ndarray]:
    """The relaxed-structure error after k steps of ``rule`` from ``start``, and its gradient in θ.

    The map X_{t+1} = Φ(X_t, F(X_t; θ)) is run forward k times, keeping every step's neighbour structure and
    record; the loss D(X_k) is the mass-weighted RMS displacement from ``target``
    (:func:`~mtpfit.relax.displacement.displacement_rmsd`). Backpropagation through time then carries
    X̄_t = ∂D/∂X_t back: each step's VJP gives the cotangent of the previous state and of the forces F̄_t, and
    F̄_t·∂F/∂X (the energy's exact Hessian–vector product) and F̄_t·∂F/∂θ come from one core call
    (:meth:`MTP.force_vjp`). Cost: k force evaluations forward and k second-order passes back.

    Parameters
    ----------
    mtp : MTP
    theta : ndarray, shape (n_params,)
    start, target : Configuration
        Same atoms and cell: the displaced start and the DFT minimum.
    rule : GradientDescent or FIRE
    k : int
        Steps, ≥ 1.
    gradient : bool
        Compute dD/dθ (otherwise only the forward pass runs).

    Returns
    -------
    D : float
        Å.
    grad : ndarray, shape (n_params,), or None
        dD/dθ.
    positions : ndarray, shape (N, 3)
        X_k, Å.
    """
    from .. import _core

    if k < 1:
        raise ValueError(f"the unrolled relaxation needs k ≥ 1 steps, got {k}")
    state = rule.init(start.positions)
    tape = []
    for t in range(k):
        structure, _, forces = _evaluate(mtp, theta, start, state["X"], t)
        state, record = rule.step(state, forces)
        tape.append((structure, record))
    D, X_bar = displacement_rmsd(state["X"], target)
    if not gradient:
        return D, None, state["X"]
    grad = np.zeros(mtp.n_params)
    cotangent = {key: (X_bar if key == "X" else np.zeros_like(value)) for key, value in state.items()
                 if isinstance(value, np.ndarray)}
    for structure, record in reversed(tape):
        cotangent, f_bar = rule.vjp(record, cotangent)
        g_theta, g_x = _core.force_vjp(mtp.basis.core, theta, structure, f_bar)
        grad += g_theta
        cotangent["X"] = cotangent["X"] + g_x
    return D, grad, state["X"]

