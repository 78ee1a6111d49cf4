"""Neighbour lists with periodic images, handed to the core as its fixed geometry."""
from __future__ import annotations

import math
import warnings

import numpy as np
import vesin

from .configuration import Configuration

__all__ = ["MIN_DISTANCE", "MAX_COORDINATE", "MIN_CELL_SINE", "MAX_PAIRS", "ShortDistanceWarning",
           "check_geometry", "estimated_pairs", "neighbor_pairs", "build_structure", "VerletNeighbors"]

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


def _box(config: Configuration) -> np.ndarray:
    """The cell as vesin and the core's shifts use it: rows along non-periodic directions zeroed (they mean
    nothing there, and a degenerate one cannot make vesin's box singular); zeros without a cell."""
    return np.zeros((3, 3)) if config.cell is None else np.where(config.pbc[:, None], config.cell, 0.0)


def _pairs(config: Configuration, cutoff: float, shifts: bool = False):
    """:func:`neighbor_pairs` with the distances: (i, j, |r_ij|, r_ij), and with ``shifts`` the integer cell
    shifts S_ij (P, 3) as a fifth array."""
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
    calculator = vesin.NeighborList(cutoff=radius, full_list=True, sorted=True)
    i, j, S, d, vectors = calculator.compute(config.positions, _box(config), config.pbc, quantities="ijSdD")
    close = d < MIN_DISTANCE
    if close.any():
        k = int(np.argmax(close))
        _refuse_overlap(config, i[k], j[k], d[k])
    keep = d < cutoff
    found = (i[keep].astype(np.int64), j[keep].astype(np.int64), d[keep], np.ascontiguousarray(vectors[keep]))
    return found + (S[keep],) if shifts else found


def _refuse_overlap(config: Configuration, i, j, distance) -> None:
    raise ValueError(f"{config.source}: atoms {i} and {j} are {distance:.4f} Å apart "
                     f"(closer than {MIN_DISTANCE} Å); overlapping atoms")


def _warn_short(config: Configuration, i, j, distance: float, min_dist: float, stacklevel: int) -> None:
    """Warn (:class:`ShortDistanceWarning`) that atoms i and j, ``distance`` Å apart, are closer than
    ``min_dist``; ``stacklevel`` counts from the caller of this function."""
    if distance < min_dist:
        warnings.warn(ShortDistanceWarning(
            f"{config.source}: atoms {i} and {j} are {distance:.4f} Å apart, closer than the potential's "
            f"min_dist = {min_dist:g} Å, where its radial basis is extrapolated", float(distance)),
            stacklevel=stacklevel + 1)


def build_structure(config: Configuration, types: np.ndarray, cutoff: float, species_count: int,
                    min_dist: float = 0.0, skin: float = 0.0):
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
    skin : float, optional
        Verlet skin, Å: with ``skin > 0`` the list holds the pairs within ``cutoff + skin`` and the cell shift of
        each, so that ``Structure.set_positions`` can follow atoms that move (see :class:`VerletNeighbors`);
        the core skips the pairs beyond its basis' cutoff.

    Returns
    -------
    mtpfit._core.Structure

    Raises
    ------
    ValueError
        As :func:`neighbor_pairs`, or for a negative or non-finite ``skin``.
    """
    from .. import _core

    skin = float(skin)
    if not 0.0 <= skin < math.inf:
        raise ValueError(f"{config.source}: the Verlet skin must be non-negative and finite, got {skin}")
    found = _pairs(config, float(cutoff) + skin, shifts=skin > 0.0)
    i, j, d, vectors = found[:4]
    if len(i) and min_dist > 0.0:
        k = int(np.argmin(d))
        _warn_short(config, i[k], j[k], float(d[k]), min_dist, stacklevel=3)   # the caller of our caller
    offsets = np.zeros(config.n_atoms + 1, dtype=np.int64)
    np.cumsum(np.bincount(i, minlength=config.n_atoms), out=offsets[1:])
    shifts = found[4].astype(np.int32) if skin > 0.0 else None
    return _core.Structure(np.asarray(types, np.int32), offsets.astype(np.int32), j.astype(np.int32),
                           vectors, species_count, shifts)


class VerletNeighbors:
    """The core's structure of a configuration that moves step by step (MD, relaxations), rebuilt only when needed.

    The neighbour list is built at ``cutoff + skin`` and kept while no atom has moved more than ``skin / 2``
    from where it was at the last build, and the number of atoms, their types, the cell and the periodicity are
    unchanged (compared exactly): then every pair now within ``cutoff`` was within ``cutoff + skin`` at the
    build, since two atoms that each moved at most ``skin / 2`` changed their distance by at most ``skin``
    (Verlet 1967; LAMMPS ``neighbor`` with ``neigh_modify check yes``). On reuse only the neighbour vectors are
    recomputed, r_ij = x_j − x_i + S_ij·cell with the stored integer shifts, and the core skips the pairs beyond
    ``cutoff``: the evaluation equals one on a freshly built list but for the order of the sums (~1e-15
    relative).

    Parameters
    ----------
    cutoff : float
        The potential's cutoff, Å.
    skin : float
        Å, ≥ 0; 0 builds a new list at every call.
    species_count : int
    min_dist : float, optional
        The potential's R_min, Å, for :class:`ShortDistanceWarning` (at every call, as :func:`build_structure`).
    n_threads : int, optional
        OpenMP threads that recompute the vectors (0: all).

    Attributes
    ----------
    builds : int
        Neighbour lists built so far.

    Raises
    ------
    ValueError
        On construction, for a cutoff that is not positive and finite or a skin that is negative or not finite.
    """

    def __init__(self, cutoff: float, skin: float, species_count: int, min_dist: float = 0.0, n_threads: int = 1):
        self.cutoff, self.skin = float(cutoff), float(skin)
        if not 0.0 < self.cutoff < math.inf:
            raise ValueError(f"the cutoff must be positive and finite, got {cutoff}")
        if not 0.0 <= self.skin < math.inf:
            raise ValueError(f"the Verlet skin must be non-negative and finite, got {skin}")
        self.species_count, self.min_dist, self.n_threads = int(species_count), float(min_dist), int(n_threads)
        self.builds = 0
        self._structure = self._inside_pairs = None
        self._built_at = self._types = self._cell = self._pbc = None

    def structure(self, config: Configuration, types: np.ndarray):
        """The core's structure of ``config``: the kept list with its vectors moved to ``config.positions``, or a
        new list.

        Parameters
        ----------
        config : Configuration
        types : ndarray of int, shape (N,)
            Potential type index of every atom.

        Returns
        -------
        mtpfit._core.Structure
            Owned by this object: the next call may change it in place.

        Raises
        ------
        ValueError
            As :func:`build_structure`; on reuse, for two atoms closer than :data:`MIN_DISTANCE`.
        """
        types = np.asarray(types, np.int32)
        if self._reusable(config, types):
            distance, i, j = self._structure.set_positions(config.positions, _box(config), self.n_threads)
            if distance < MIN_DISTANCE:
                _refuse_overlap(config, i, j, distance)
            if i >= 0 and self.min_dist > 0.0:
                _warn_short(config, i, j, distance, self.min_dist, stacklevel=2)      # as a build would
            return self._inside()
        self._structure = None      # a refused build must not leave the old list to be reused
        structure = build_structure(config, types, self.cutoff, self.species_count, self.min_dist, self.skin)
        self.builds += 1
        self._structure, self._built_at, self._types = structure, config.positions.copy(), types.copy()
        self._cell = None if config.cell is None else config.cell.copy()
        self._pbc = config.pbc.copy()
        return self._inside()

    def _inside(self):
        # the kernels skip the skin's pairs, but each one costs in their per-pair passes (15 % of an evaluation of
        # bcc Mo at 2000 atoms with the default skin, whose list holds 2.2 times the pairs inside the cutoff)
        if self.skin == 0.0:
            return self._structure
        if self._inside_pairs is None:
            from .. import _core

            self._inside_pairs = _core.Structure(np.zeros(0, np.int32), np.zeros(1, np.int32), np.zeros(0, np.int32),
                                                 np.zeros(0), 1, None)
        self._structure.within(self.cutoff, self._inside_pairs, self.n_threads)
        return self._inside_pairs

    def _reusable(self, config: Configuration, types: np.ndarray) -> bool:
        if self.skin == 0.0 or self._structure is None or config.n_atoms != len(self._built_at):
            return False
        same_cell = (config.cell is None and self._cell is None) or (
            config.cell is not None and self._cell is not None and np.array_equal(config.cell, self._cell))
        if not (same_cell and np.array_equal(config.pbc, self._pbc) and np.array_equal(types, self._types)):
            return False
        moved = config.positions - self._built_at
        return float(np.max(np.einsum("ij,ij->i", moved, moved))) <= (0.5 * self.skin) ** 2
