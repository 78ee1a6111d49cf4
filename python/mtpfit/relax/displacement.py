"""The relaxed-structure error: mass-weighted RMS displacement between two sets of positions of the same atoms."""
from __future__ import annotations

import numpy as np
from ase.data import atomic_masses, atomic_numbers
from ase.geometry import find_mic

from ..data.configuration import Configuration

__all__ = ["atomic_mass", "displacement_rmsd"]


def atomic_mass(config: Configuration) -> np.ndarray:
    """Atomic masses (u) of ``config``'s atoms from ASE's table when the species are element symbols; ones when
    they are type indices (the masses are then unknown and every atom weighs the same).

    Raises
    ------
    ValueError
        For a symbol that is not an element, naming the configuration.
    """
    labels = config.species.tolist()
    if not all(isinstance(s, str) for s in labels):
        return np.ones(len(labels))
    try:
        return np.array([atomic_masses[atomic_numbers[s]] for s in labels])
    except KeyError as err:
        raise ValueError(f"{config.source}: {err.args[0]!r} is not an element symbol") from None


def displacement_rmsd(positions: np.ndarray, reference: Configuration) -> tuple[float, np.ndarray]:
    """D = sqrt(Σ_i m_i |Δ_i|² / Σ_i m_i), Δ_i the minimum-image displacement of atom i from ``reference`` less
    the mass-weighted mean displacement (a rigid translation is no error), and its gradient.

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
        Å.
    reference : Configuration
        The same atoms at their reference (DFT-relaxed) positions; its cell and periodicity define the
        minimum image.

    Returns
    -------
    D : float
        Å.
    grad : ndarray, shape (N, 3)
        ∂D/∂positions = m_i Δ_i / (M D) (dimensionless); zero when D = 0.
    """
    m = atomic_mass(reference)
    delta = positions - reference.positions
    if reference.cell is not None and np.any(reference.pbc):
        delta, _ = find_mic(delta, reference.cell, reference.pbc)
    M = m.sum()
    delta = delta - (m @ delta) / M
    D = float(np.sqrt(np.sum(m[:, None] * delta ** 2) / M))
    # the mean removal drops out of the gradient: Σ_i m_i Δ_i = 0 after it
    grad = m[:, None] * delta / (M * D) if D > 0 else np.zeros_like(delta)
    return D, grad
