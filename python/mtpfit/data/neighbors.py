"""Neighbour lists with periodic images, handed to the core as its fixed geometry."""
from __future__ import annotations

import math
import warnings

import numpy as np
import vesin

from .configuration import Configuration

__all__ = ["MIN_DISTANCE", "MAX_COORDINATE", "MIN_CELL_SINE", "MAX_PAIRS", "ShortDistanceWarning",
           "check_geometry", "estimated_pairs", "neighbor_pairs", "build_structure"]

#: Atoms closer than this (Å) are taken as a broken input, not physics; so is a periodic cell vector shorter
#: than it (every atom that close to its own image).
MIN_DISTANCE = 0.1

#: Largest |coordinate| and |cell entry| (Å) a neighbour list is built for. float64 resolves r_ij = r_j − r_i
#: to |x|·2.2e-16, 2e-10 Å at 1e6 Å, and no simulation box comes near that size (DFT cells are 10–100 Å, MD
#: boxes up to ~1e4 Å): larger values are broken input, and values near 1e300 kill vesin (SIGFPE).
MAX_COORDINATE = 1e6

#: Least volume (area, for two) spanned by the periodic cell vectors as a fraction of the product of their
#: lengths: the sine of their angle for two, |â·(b̂×ĉ)| for three. Below it the cell is degenerate (equal or
#: parallel rows) and vesin cannot invert it.
MIN_CELL_SINE = 1e-6

#: Largest neighbour list built for one configuration, in (i, j) pairs. A pair costs about 200 bytes at peak
#: (vesin's output, the filtered copies, the core's structure) and 1.2 µs to build, so the limit is ~4 GB and
#: ~25 s: at metal densities (0.06 atoms/Å³) a cutoff of ~90 Å for 100 atoms, ~34 Å for 2000 (max_dist = 300 Å,
#: which took 16 GB, is refused). Read at every call: raise it (``mtpfit.data.neighbors.MAX_PAIRS = 1e8``) for
#: larger systems.
MAX_PAIRS = 2e7

#: vesin keeps its cell list at about this many cells (``MAX_NUMBER_OF_CELLS`` in its ``cpu_cell_list.cpp``);
#: past it, it shrinks the grid keeping the ratios of the three axes, which rounds an axis to zero cells for an
#: elongated box (a flat 2000 Å molecule at a 5 Å cutoff) and divides by zero (SIGFPE). We stay under it.
_VESIN_MAX_CELLS = 1e5


class ShortDistanceWarning(UserWarning):
    """Two atoms closer than the potential's ``min_dist``, where its radial basis is extrapolated.

    Attributes
    ----------
    distance : float
        The shortest distance, Å (``inf`` for a summary built from others).
    """

    def __init__(self, message: str, distance: float = float("inf")):
        super().__init__(message)
        self.distance = distance


def check_geometry(config: Configuration) -> None:
    """Refuse positions and cells no neighbour list should be built for. Run by :func:`neighbor_pairs` on every
    call (positions may have been moved in place since the configuration was made, as relaxations do); it
    costs ~30 µs for 2000 atoms.

    Raises
    ------
    ValueError
        Naming ``config.source``: a coordinate or cell entry that is not finite or beyond
        :data:`MAX_COORDINATE` in magnitude, a periodic cell vector shorter than :data:`MIN_DISTANCE`, or
        periodic cell vectors that are (nearly) linearly dependent (:data:`MIN_CELL_SINE`).
    """
    def refuse(message):
        raise ValueError(f"{config.source}: {message}")

    arrays = [("positions", config.positions)] + ([("cell", config.cell)] if config.cell is not None else [])
    for name, values in arrays:
        largest = float(np.max(np.abs(values)))
        if not largest <= MAX_COORDINATE:       # NaN too
            refuse(f"{name} contain |x| = {largest:.3g} Å, beyond MAX_COORDINATE = {MAX_COORDINATE:g} Å "
                   "(mtpfit.data.neighbors)")
    rows = config.cell[config.pbc] if config.cell is not None else np.zeros((0, 3))
    if len(rows):
        lengths = np.linalg.norm(rows, axis=1)
        if lengths.min() < MIN_DISTANCE:
            refuse(f"a periodic cell vector is {lengths.min():.3g} Å long, shorter than {MIN_DISTANCE} Å (every "
                   "atom would overlap its own image)")
        sine = _lattice_size(rows / lengths[:, None])
        if sine < MIN_CELL_SINE:
            refuse(f"the periodic cell vectors {np.flatnonzero(config.pbc).tolist()} are linearly dependent "
                   f"(degenerate cell: spanned volume/product of lengths = {sine:.3g} < {MIN_CELL_SINE:g})")


def _lattice_size(rows: np.ndarray) -> float:
    """Volume, area or length (Å^k) spanned by k cell vectors (rows), sqrt(det(A Aᵀ)); 1 for none."""
    return math.sqrt(max(np.linalg.det(rows @ rows.T), 0.0)) if len(rows) else 1.0


def _spans(config: Configuration) -> np.ndarray:
    """Length (Å) of the box along vesin's three axes: the cell's height along each periodic vector (its
    lattice size over that of the other periodic vectors), the span of the positions along each Cartesian axis
    that is not periodic (at least 1 Å, as vesin pads a flat span)."""
    spans = np.zeros(3)
    for axis in np.flatnonzero(~config.pbc):
        column = config.positions[:, axis]          # one column at a time: 5x faster than np.ptp(axis=0)
        spans[axis] = column.max() - column.min()
    periodic = np.flatnonzero(config.pbc)
    if len(periodic):
        rows = config.cell[periodic]
        size = _lattice_size(rows)
        for k, axis in enumerate(periodic):
            spans[axis] = size / _lattice_size(np.delete(rows, k, axis=0))
    return np.maximum(spans, 1.0)


def _grid_cutoff(spans: np.ndarray, cutoff: float) -> float:
    """The smallest search radius ≥ ``cutoff`` (Å) whose cell grid has at most half vesin's cell limit, so that
    vesin never shrinks the grid itself (see :data:`_VESIN_MAX_CELLS`). Equal to ``cutoff`` unless the box is
    more than ~45 cutoffs wide along some axis."""
    limit = _VESIN_MAX_CELLS / 2
    lengths = spans * 1.01          # vesin's margin around the positions
    radius = float(cutoff)
    for _ in range(16):
        cells = np.maximum(np.floor(lengths / radius), 1.0)
        total = float(np.prod(cells))
        if total <= limit:
            return radius
        radius *= (total / limit) ** (1.0 / np.count_nonzero(cells > 1.0)) * 1.001
    return float(max(lengths.max(), cutoff))


def estimated_pairs(config: Configuration, cutoff: float) -> float:
    """Expected number of (i, j) pairs within ``cutoff`` (Å), from the number density, before any list is built.

    Each atom has about N·(2r)^p/A·Π_k min(1, 2r/L_k)·b neighbours: p periodic cell vectors spanning a lattice of
    volume (area, length) A, L_k the span of the positions along each non-periodic Cartesian axis, and b the
    volume of a ball of unit diameter in the d dimensions where the sphere of radius r is cut (π/6 for d = 3,
    π/4 for 2, 1 otherwise). For a 3D-periodic cell this is N·(N/V)·(4/3)πr³; for a molecule smaller than the
    cutoff, N².

    Parameters
    ----------
    config : Configuration
    cutoff : float
        Å.

    Returns
    -------
    float
        Pairs.

    Raises
    ------
    ValueError
        As :func:`check_geometry`.
    """
    check_geometry(config)
    return _estimate(config, _spans(config), float(cutoff))


def _estimate(config: Configuration, spans: np.ndarray, radius: float) -> float:
    reach = 2.0 * radius / spans[~config.pbc]
    periodic = int(np.count_nonzero(config.pbc))
    cut = periodic + int(np.count_nonzero(reach < 1.0))
    ball = {0: 1.0, 1: 1.0, 2: math.pi / 4, 3: math.pi / 6}[cut]
    # Π over periodic vectors of 2r/h_k is (2r)^k over the lattice's volume (area, length)
    images = 1.0 if not periodic else (2.0 * radius) ** periodic / _lattice_size(config.cell[config.pbc])
    with np.errstate(over="ignore", divide="ignore"):
        return float(config.n_atoms) ** 2 * images * float(np.prod(np.minimum(reach, 1.0))) * ball


def neighbor_pairs(config: Configuration, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i, j, r_ij) with 0 < |r_ij| < cutoff, images of every atom included.

    Uses vesin, which handles cells smaller than the cutoff, skewed cells and partial
    periodicity (MTP_SPEC §1). The geometry is checked first (:func:`check_geometry`), and the
    size of the list estimated (:func:`estimated_pairs`) and refused past :data:`MAX_PAIRS`, so that no input
    reaches vesin that can crash it or exhaust the memory.

    Parameters
    ----------
    config : Configuration
    cutoff : float
        Å, positive and finite.

    Returns
    -------
    i, j : ndarray of int, shape (P,)
        Central atom and neighbour (the atom an image belongs to), sorted by ``i``.
    vectors : ndarray, shape (P, 3)
        r_ij = r_j + shift − r_i, Å.

    Raises
    ------
    ValueError
        Naming the configuration: a geometry :func:`check_geometry` refuses, a list estimated
        at more than :data:`MAX_PAIRS` pairs, or two atoms (or an atom and an image) closer than
        :data:`MIN_DISTANCE`.
    """
    i, j, _, vectors = _pairs(config, cutoff)
    return i, j, vectors


def _pairs(config: Configuration, cutoff: float):
    """:func:`neighbor_pairs` with the distances: (i, j, |r_ij|, r_ij)."""
    cutoff = float(cutoff)
    if not 0.0 < cutoff < math.inf:
        raise ValueError(f"{config.source}: the cutoff must be positive and finite, got {cutoff}")
    check_geometry(config)
    spans = _spans(config)
    radius = _grid_cutoff(spans, cutoff)
    expected = _estimate(config, spans, radius)
    if not expected <= MAX_PAIRS:
        raise ValueError(
            f"{config.source}: the neighbour list at a cutoff of {cutoff:g} Å would hold about {expected:.3g} "
            f"pairs ({expected / config.n_atoms:.3g} neighbours for each of {config.n_atoms} atoms), more than "
            f"MAX_PAIRS = {MAX_PAIRS:.3g} (~{200 * MAX_PAIRS / 1e9:.0f} GB); lower max_dist, or raise "
            f"mtpfit.data.neighbors.MAX_PAIRS for a system this large")
    # rows along non-periodic directions mean nothing; zeroed, a degenerate one cannot make vesin's box singular
    box = np.zeros((3, 3)) if config.cell is None else np.where(config.pbc[:, None], config.cell, 0.0)
    calculator = vesin.NeighborList(cutoff=radius, full_list=True, sorted=True)
    i, j, d, vectors = calculator.compute(config.positions, box, config.pbc, quantities="ijdD")
    close = d < MIN_DISTANCE
    if close.any():
        k = int(np.argmax(close))
        raise ValueError(f"{config.source}: atoms {i[k]} and {j[k]} are {d[k]:.4f} Å apart "
                         f"(closer than {MIN_DISTANCE} Å); overlapping atoms")
    keep = d < cutoff
    return i[keep].astype(np.int64), j[keep].astype(np.int64), d[keep], np.ascontiguousarray(vectors[keep])


def build_structure(config: Configuration, types: np.ndarray, cutoff: float, species_count: int,
                    min_dist: float = 0.0):
    """The core's fixed-geometry representation of ``config``.

    Parameters
    ----------
    config : Configuration
    types : ndarray of int, shape (N,)
        Potential type index of every atom.
    cutoff : float
        Neighbour cutoff, Å.
    species_count : int
    min_dist : float, optional
        The potential's R_min, Å: a :class:`ShortDistanceWarning` names the closest pair when it is nearer
        than that (the radial basis is extrapolated there, as motep warns).

    Returns
    -------
    mtpfit._core.Structure

    Raises
    ------
    ValueError
        As :func:`neighbor_pairs`.
    """
    from .. import _core

    i, j, d, vectors = _pairs(config, cutoff)
    if len(i) and min_dist > 0.0:
        k = int(np.argmin(d))
        if d[k] < min_dist:
            distance = float(d[k])
            warnings.warn(ShortDistanceWarning(
                f"{config.source}: atoms {i[k]} and {j[k]} are {distance:.4f} Å apart, closer than the potential's "
                f"min_dist = {min_dist:g} Å, where its radial basis is extrapolated", distance), stacklevel=3)
    offsets = np.zeros(config.n_atoms + 1, dtype=np.int64)
    np.cumsum(np.bincount(i, minlength=config.n_atoms), out=offsets[1:])
    return _core.Structure(np.asarray(types, np.int32), offsets.astype(np.int32), j.astype(np.int32),
                           vectors, species_count)
