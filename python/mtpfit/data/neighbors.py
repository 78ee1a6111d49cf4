"""Neighbour lists with periodic images, handed to the core as its fixed geometry."""
from __future__ import annotations

import numpy as np
import vesin

from .configuration import Configuration

__all__ = ["MIN_DISTANCE", "neighbor_pairs", "build_structure"]

#: Atoms closer than this (Å) are taken as a broken input, not physics.
MIN_DISTANCE = 0.1


def neighbor_pairs(config: Configuration, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i, j, r_ij) with 0 < |r_ij| < cutoff, images of every atom included.

    Uses vesin, which handles cells smaller than the cutoff, skewed cells and partial
    periodicity (MTP_SPEC §1).

    Parameters
    ----------
    config : Configuration
    cutoff : float
        Å.

    Returns
    -------
    i, j : ndarray of int, shape (P,)
        Central atom and neighbour (the atom an image belongs to), sorted by ``i``.
    vectors : ndarray, shape (P, 3)
        r_ij = r_j + shift − r_i, Å.

    Raises
    ------
    ValueError
        If two atoms (or an atom and an image) are closer than :data:`MIN_DISTANCE`.
    """
    box = config.cell if config.cell is not None else np.zeros((3, 3))
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True, sorted=True)
    i, j, d, vectors = calculator.compute(config.positions, box, config.pbc, quantities="ijdD")
    close = d < MIN_DISTANCE
    if close.any():
        k = int(np.argmax(close))
        raise ValueError(f"{config.source}: atoms {i[k]} and {j[k]} are {d[k]:.4f} Å apart "
                         f"(closer than {MIN_DISTANCE} Å); overlapping atoms")
    keep = d < cutoff
    return i[keep].astype(np.int64), j[keep].astype(np.int64), np.ascontiguousarray(vectors[keep])


def build_structure(config: Configuration, types: np.ndarray, cutoff: float, species_count: int):
    """The core's fixed-geometry representation of ``config``.

    Parameters
    ----------
    config : Configuration
    types : ndarray of int, shape (N,)
        Potential type index of every atom.
    cutoff : float
        Neighbour cutoff, Å.
    species_count : int

    Returns
    -------
    mtpfit._core.Structure
    """
    from .. import _core

    i, j, vectors = neighbor_pairs(config, cutoff)
    offsets = np.zeros(config.n_atoms + 1, dtype=np.int64)
    np.cumsum(np.bincount(i, minlength=config.n_atoms), out=offsets[1:])
    return _core.Structure(np.asarray(types, np.int32), offsets.astype(np.int32), j.astype(np.int32),
                           vectors, species_count)
