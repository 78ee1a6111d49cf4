"""DFT minima and seeded displaced starts for relaxation fine-tuning."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.configuration import Configuration
from ..data.dataset import Dataset
from .displacement import atomic_mass

__all__ = ["RelaxationPair", "dft_minima", "displaced_starts"]


@dataclass(frozen=True)
class RelaxationPair:
    """A start for a relaxation and the DFT minimum it should reach.

    Attributes
    ----------
    start : Configuration
        The minimum with its atoms displaced (no labels).
    minimum : Configuration
        The DFT minimum, with its labels.
    """

    start: Configuration
    minimum: Configuration


def dft_minima(dataset: Dataset, fmax: float = 0.02) -> Dataset:
    """The configurations whose largest DFT force component |F_ia| is below ``fmax`` (eV/Å).

    Raises
    ------
    ValueError
        If none qualifies, or a configuration has no force labels (naming it).
    """
    chosen = []
    for c in dataset:
        if c.forces is None:
            raise ValueError(f"{c.source}: no force labels, so it cannot be recognised as a DFT minimum")
        if np.abs(c.forces).max() < fmax:
            chosen.append(c)
    if not chosen:
        raise ValueError(f"{dataset.name}: no configuration has every force component below {fmax} eV/Å")
    return Dataset(chosen, f"{dataset.name} minima")


def displaced_starts(minima: Dataset, amplitude: float = 0.05, n_starts: int = 1,
                     seed: int = 0) -> list[RelaxationPair]:
    """``n_starts`` starts per minimum: every Cartesian coordinate displaced by a Gaussian of standard deviation
    ``amplitude`` (Å), less the mass-weighted mean displacement, so the centre of mass stays put.

    The RMS displacement of a start is about √3·amplitude. Start s of minimum c draws from
    ``numpy.random.default_rng([seed, c, s])``, so adding minima or starts leaves the others unchanged.

    Returns
    -------
    list of RelaxationPair
        Minimum-major order.
    """
    if not amplitude > 0 or n_starts < 1:
        raise ValueError(f"need amplitude > 0 and n_starts ≥ 1, got {amplitude} and {n_starts}")
    pairs = []
    for c_index, minimum in enumerate(minima):
        m = atomic_mass(minimum)
        for s in range(n_starts):
            shift = np.random.default_rng([seed, c_index, s]).normal(scale=amplitude, size=minimum.positions.shape)
            shift -= (m @ shift) / m.sum()
            start = Configuration(minimum.positions + shift, minimum.species, minimum.cell, minimum.pbc,
                                  group=minimum.group, source=f"{minimum.source}, displaced start {s}")
            pairs.append(RelaxationPair(start, minimum))
    return pairs
