"""The extrapolation grade of an MTP and its active set, in configuration and neighbourhood mode (MLIP-2's
``mlp calc-grade`` and ``mlp select-add``).

Podryabinkin and Shapeev, Comput. Mater. Sci. 140, 171 (2017): linearise the energy in the coefficients, so that
configuration k contributes the row b_k; the active set is the n rows of the training set whose n × n matrix A
has maximal |det| (:func:`~mtpfit.active.maxvol.maxvol`), and the grade γ_k = max_j |(b_k A⁻¹)_j| says how far
outside the span of that set, in units of its members, configuration k lies: γ ≤ 1 interpolates, γ > 1
extrapolates (MLIP's usual thresholds: 2 to select during MD, ~10 to stop it).

The row (a choice, stated here because the grade depends on it):

* b_k = (∂E_k/∂θ restricted to the species and moment coefficients) / N_k. The species and moment blocks are the
  coefficients the energy is *linear* in (E = Σ_i [ξ_{t_i} + Σ_α θ_α B_α(i)]), so this b_k is exact, not a
  linearisation (the paper's Eq. (8) for a linear model). The radial block is left out: its columns are nearly
  dependent on the data (for a level-8 Mo potential the per-atom 26-column matrix has singular values from 1e5
  down to 1e-20, the 10-column linear block from 14 down to 4e-8), so a maxvol over the full θ would pick its
  members by round-off. Grades are therefore comparable with MLIP-2's only where it uses the same columns.
* Dividing by the atom count N_k follows MLIP-2's default ``weighting = vibrations`` for the energy equation in
  its selection (``MV_ene_cmpnts_weight · ∂E/∂θ / N``): it makes γ intensive, so a supercell of a member has
  γ = 1 and large cells are not preferred for their size alone.

Neighbourhood mode (``mode="neighbourhood"``, MLIP's per-atom grade): one row per atom, ∂V_i/∂(ξ, c) = the
one-hot of its species and its basis functions B_α(i) (the core's ``site_linear_rows``); the active set is chosen
among all atoms of the training set, an atom's γ says how far its neighbourhood lies outside theirs, and a
configuration's γ is the largest of its atoms'. :func:`select` then swaps in atoms and selects the configurations
they belong to. A configuration row is the mean of its atoms' rows, so on cells
whose atoms are all alike (one atom per primitive cell, a perfect crystal) the two modes give the same rows.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset
from ..io.errors import FormatError
from ..potential import MTP
from .maxvol import grow, maxvol

__all__ = ["ActiveSet", "build_active_set", "configuration_rows", "neighbourhood_rows", "grade", "atom_grades",
           "select", "active_set_path", "potential_digest", "theta_checksum", "MODES"]

#: The two kinds of rows: one per configuration, or one per atom (its neighbourhood).
MODES = ("configuration", "neighbourhood")

#: First entry of a saved active set, so that another ``.npz`` is recognised as not one.
FORMAT = "mtpfit-active-set-1"

#: The ``format`` line of the text file of a neighbourhood-mode active set for the LAMMPS pair style
#: (:meth:`ActiveSet.write_lammps`).
LAMMPS_FORMAT = "mtpfit-active-set-lammps-1"


def theta_checksum(theta) -> str:
    """FNV-1a (64 bit) of the IEEE-754 little-endian bytes of θ, as 16 hex digits.

    The LAMMPS pair style recomputes it from the θ it parses out of the ``.mtp`` file (``cpp/lammps/
    active_set_file.cpp``), so it refuses an active set written for another potential without a SHA-256 of its own;
    Fowler–Noll–Vo hash, offset basis 14695981039346656037, prime 1099511628211.

    Parameters
    ----------
    theta : array_like of float, shape (n_params,)

    Returns
    -------
    str
        16 lower-case hex digits.
    """
    h = 0xCBF29CE484222325
    for byte in np.ascontiguousarray(theta, dtype="<f8").tobytes():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def potential_digest(mtp: MTP) -> str:
    """SHA-256 (hex) of what the rows depend on: θ, the basis (cutoffs, radial basis, moment tables, scaling)
    and the species labels; any change of the potential changes it."""
    b = mtp.basis
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(mtp.theta, dtype="<f8").tobytes())
    h.update(np.array([b.species_count, b.radial_basis_size, b.radial_funcs_count, b.alpha_moments_count],
                      dtype="<i8").tobytes())
    h.update(np.array([b.min_dist, b.max_dist, b.scaling], dtype="<f8").tobytes())
    for table in (b.alpha_index_basic, b.alpha_index_times, b.alpha_moment_mapping):
        h.update(np.ascontiguousarray(table, dtype="<i8").tobytes())
    h.update(repr(list(mtp.species)).encode())
    return h.hexdigest()


def configuration_rows(mtp: MTP, dataset: Dataset, n_threads: int = 0) -> np.ndarray:
    """The grade's row of every configuration: (∂E_k/∂θ on the species and moment blocks) / N_k.

    Parameters
    ----------
    mtp : MTP
    dataset : Dataset
        Labels are not needed.
    n_threads : int
        OpenMP threads; 0: all.

    Returns
    -------
    ndarray, shape (K, S + M)
        eV per unit coefficient per atom; columns: the species block, then the moment block.

    Raises
    ------
    ValueError
        From :meth:`mtpfit.MTP.structure`: unknown species, overlapping atoms; for an empty dataset.
    """
    # E_k = Σ_i V_i and V_i is linear in (ξ, c): the configuration's row is the mean of its atoms' rows
    rows, owner = neighbourhood_rows(mtp, dataset, n_threads)
    starts = np.searchsorted(owner, np.arange(len(dataset)))
    return np.add.reduceat(rows, starts, axis=0) / np.diff(np.append(starts, len(owner)))[:, None]


def neighbourhood_rows(mtp: MTP, dataset: Dataset, n_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The grade's row of every atom: ∂V_i/∂(ξ, c), its species' one-hot then its basis functions B_α(i).

    Returns
    -------
    rows : ndarray, shape (Σ N_k, S + M)
        eV per unit coefficient, atoms in dataset order.
    owner : ndarray of int, shape (Σ N_k,)
        The configuration of each row.

    Raises
    ------
    ValueError
        From :meth:`mtpfit.MTP.structure`: unknown species, overlapping atoms; for an empty dataset.
    """
    from .. import _core

    if len(dataset) == 0:
        raise ValueError(f"{dataset.name}: no configurations")
    rows, owner = [], []
    for k, c in enumerate(dataset):
        rows.append(_core.site_linear_rows(mtp.basis.core, mtp.theta, mtp.structure(c), n_threads))
        owner.append(np.full(c.n_atoms, k))
    return np.concatenate(rows), np.concatenate(owner)


def _rows(mtp: MTP, dataset: Dataset, mode: str, n_threads: int) -> tuple[np.ndarray, np.ndarray]:
    if mode == "configuration":
        return configuration_rows(mtp, dataset, n_threads), np.arange(len(dataset))
    if mode == "neighbourhood":
        return neighbourhood_rows(mtp, dataset, n_threads)
    raise ValueError(f"unknown grade mode {mode!r}; choose from {', '.join(MODES)}")


@dataclass
class ActiveSet:
    """The active set of a potential: n configurations whose rows span the training set with maximal volume.

    Attributes
    ----------
    digest : str
        :func:`potential_digest` of the potential the rows were computed with.
    rows : ndarray, shape (n, n)
        A: the members' rows (:func:`configuration_rows`) in the kept ``columns``.
    inverse : ndarray, shape (n, n)
        A⁻¹.
    sources : list of str
        Where each member came from (``Configuration.source``), in row order.
    columns : ndarray of int, shape (n,)
        The columns of :func:`configuration_rows` the set is built on: all S + M but those that are exact linear
        combinations of the others over the training set (:func:`independent_columns`).
    mode : {"configuration", "neighbourhood"}
        What a row is (:data:`MODES`); in neighbourhood mode ``sources`` name the member atoms,
        ``"<configuration source>, atom <i>"`` with i 0-based in its configuration.
    """

    digest: str
    rows: np.ndarray
    inverse: np.ndarray
    sources: list
    columns: np.ndarray
    mode: str = "configuration"

    def check(self, mtp: MTP, where: str = "the active set") -> None:
        """Raise ``ValueError`` (naming ``where``) unless the active set was built with this potential."""
        if potential_digest(mtp) != self.digest:
            source = f" ({mtp.source})" if mtp.source else ""
            raise ValueError(f"{where} was built for another potential than this one{source}: its coefficients "
                             f"or basis differ; rebuild it (build_active_set) with this potential")

    def structure_grade(self, atom_rows: np.ndarray) -> float:
        """γ of one configuration from its atoms' rows (N, S + M) (:func:`neighbourhood_rows` of it): the grade of
        their mean in configuration mode, their largest grade in neighbourhood mode."""
        atom_rows = np.asarray(atom_rows, dtype=float)
        if self.mode == "configuration":
            return float(self.grades(atom_rows.mean(axis=0)[None])[0])
        return float(self.grades(atom_rows).max())

    def grades(self, rows) -> np.ndarray:
        """γ = max_j |(b A⁻¹)_j| of each row b, shape (K,), for rows of shape (K, n)."""
        rows = np.asarray(rows, dtype=float)[:, self.columns]
        return np.abs(rows @ self.inverse).max(axis=1, initial=0.0)

    def save(self, path) -> None:
        """Write an ``.npz`` (numpy's zip of arrays, at exactly ``path``) with the entries ``format``
        (:data:`FORMAT`), ``digest``, ``rows`` (n × n float64), ``sources`` (n strings) and ``columns`` (n
        integers).

        :func:`active_set_path` gives the conventional name next to the potential, ``trained.mtp.als.npz``.
        """
        with open(path, "wb") as handle:
            np.savez(handle, format=np.array(FORMAT), digest=np.array(self.digest), rows=self.rows,
                     sources=np.array(self.sources, dtype=str), columns=np.asarray(self.columns, dtype=np.int64),
                     mode=np.array(self.mode))

    def write_lammps(self, path, mtp: MTP) -> None:
        """Write this neighbourhood-mode set as the text file of ``pair_style mtp POT.mtp extrapolation FILE``.

        The pair style grades every local atom i on the steps it is asked to, γ_i = max_j |(b_i A⁻¹)_j| with
        b_i the atom's row of :func:`neighbourhood_rows` in ``columns``: the same γ as :func:`atom_grades`. Format
        (whitespace-separated; lines starting with ``#`` are comments)::

            format mtpfit-active-set-lammps-1
            mode neighbourhood
            n_params P              # len(θ) of the potential
            species_count S
            basis_functions M       # len(alpha_moment_mapping)
            theta_fnv1a64 H         # theta_checksum(θ)
            size n
            columns c_1 … c_n       # 0-based columns of the rows (S + M wide)
            inverse                 # then n lines of n numbers: A⁻¹ row by row, %.17g (exact doubles)

        The pair style checks P, S, M and H against the ``.mtp`` it was given, so an active set of another potential
        (other coefficients or another basis) is refused.

        Parameters
        ----------
        path : str or Path
            The file to write (conventionally ``<potential>.als.txt``).
        mtp : MTP
            The potential the set was built with.

        Raises
        ------
        ValueError
            For a configuration-mode set (the pair style grades neighbourhoods, not whole configurations), or if
            the set was built for another potential than ``mtp``.
        """
        if self.mode != "neighbourhood":
            raise ValueError(f"{path}: the LAMMPS pair style grades atoms' neighbourhoods, and this is a "
                             f"{self.mode}-mode active set; build a neighbourhood-mode one (build_active_set(..., "
                             f"mode='neighbourhood'), mtpfit grade --mode neighbourhood)")
        self.check(mtp)
        n = len(self.columns)
        header = [f"# Neighbourhood-mode active set of {mtp.source or 'an MTP'} ({len(self.sources)} atoms) for the "
                  f"mtpfit LAMMPS plugin:", "#   pair_style mtp POTENTIAL.mtp extrapolation THIS_FILE [every N]",
                  "# gamma_i = max_j |(b_i A^-1)_j|, b_i = [species one-hot (S), basis functions (M)][columns]",
                  f"format {LAMMPS_FORMAT}", f"mode {self.mode}", f"n_params {len(mtp.theta)}",
                  f"species_count {mtp.basis.species_count}",
                  f"basis_functions {len(mtp.basis.alpha_moment_mapping)}",
                  f"theta_fnv1a64 {theta_checksum(mtp.theta)}", f"size {n}",
                  "columns " + " ".join(str(int(c)) for c in self.columns), "inverse"]
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(header) + "\n")
            np.savetxt(handle, np.asarray(self.inverse, dtype=float).reshape(n, n), fmt="%.17g")

    @classmethod
    def load(cls, path, mtp: MTP) -> "ActiveSet":
        """Read a file written by :meth:`save` for the potential ``mtp``.

        The inverse is recomputed from the rows.

        Raises
        ------
        mtpfit.io.FormatError
            If the file is not a saved active set (naming the file).
        ValueError
            If it was built for another potential (naming the file), or its rows are singular.
        """
        try:
            data = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as error:
            raise FormatError(path, f"cannot be read as an active set (.npz): {error}") from error
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise FormatError(path, "is a single .npy array, not an active set (.npz)")
        with data:
            needed = {"format", "digest", "rows", "sources", "columns"}
            if (needed - set(data.files)) or str(data["format"]) != FORMAT:
                raise FormatError(path, f"not an mtpfit active set (needs format {FORMAT!r}, digest, rows, "
                                        f"sources, columns)")
            digest, rows = str(data["digest"]), np.array(data["rows"], dtype=float)
            sources = [str(source) for source in data["sources"]]
            columns = np.array(data["columns"], dtype=np.int64)
            mode = str(data["mode"]) if "mode" in data.files else "configuration"
        if mode not in MODES:
            raise FormatError(path, f"unknown grade mode {mode!r}")
        if digest != potential_digest(mtp):
            ActiveSet(digest, rows, rows, sources, columns).check(mtp, where=os.fspath(path))
        width = mtp.basis.species_count + len(mtp.basis.alpha_moment_mapping)
        n = len(columns)
        if (rows.shape != (n, n) or len(sources) != n or n == 0 or columns.min() < 0 or columns.max() >= width
                or len(set(columns.tolist())) != n):
            raise FormatError(path, f"holds {rows.shape} rows, {len(sources)} sources and {n} columns; the "
                                    f"potential it names has {width} columns")
        return cls(digest, rows, np.linalg.inv(rows), sources, columns, mode)


def active_set_path(potential_path) -> Path:
    """Where the active set of the potential file ``potential_path`` lives: ``<potential>.als.npz``."""
    return Path(os.fspath(potential_path) + ".als.npz")


#: Columns whose pivot in the QR factorisation of the column-equilibrated rows is below this, relative to the
#: first, are exact linear combinations of the others (to round-off).
DEPENDENT_COLUMN = 1e-10


def independent_columns(rows: np.ndarray) -> np.ndarray:
    """The columns of ``rows`` (K, n) that are not exact linear combinations of the others, in increasing order.

    Some moment-tensor contractions are linear combinations of others for every configuration (in three
    dimensions invariants of tensors obey algebraic identities: at level 16 with one species, five basis functions
    of the 92 satisfy one identity exactly), so their columns in :func:`configuration_rows` are dependent whatever
    the data, and no square submatrix is invertible. QR with column pivoting of the column-equilibrated rows finds
    them: pivots below :data:`DEPENDENT_COLUMN` of the first are dropped (a real but weak direction, e.g. 4e-6 at
    level 16 on mlearn Mo, is kept; the identity's is 1e-16); columns below :data:`DEPENDENT_COLUMN` of the largest
    column are zero (basis functions that vanish by symmetry on these data). An identity holds for every
    configuration; a column that vanishes on the training set need not vanish elsewhere, and the grade does not
    see a new configuration's weight in it (a limitation: such a configuration extrapolates by definition).
    """
    import scipy.linalg

    norms = np.linalg.norm(rows, axis=0)
    # columns at round-off size are zero: basis functions that vanish by symmetry (odd contractions in
    # centrosymmetric neighbourhoods) come out ~1e-17, which equilibration would blow up to noise of order one
    present = norms > DEPENDENT_COLUMN * norms.max(initial=0.0)
    scaled = rows[:, present] / norms[present]
    _, R, pivots = scipy.linalg.qr(scaled, mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(R))
    keep = diagonal > DEPENDENT_COLUMN * diagonal[0] if diagonal.size else np.zeros(0, bool)
    return np.sort(np.flatnonzero(present)[pivots[:len(keep)][keep]])


def build_active_set(mtp: MTP, dataset: Dataset, n_threads: int = 0, tol: float = 1.001,
                     mode: str = "configuration") -> ActiveSet:
    """The MaxVol active set of a training set.

    Parameters
    ----------
    mtp : MTP
        The trained potential.
    dataset : Dataset
        Its training set; at least as many configurations as independent columns (:func:`independent_columns`).
    n_threads : int
        OpenMP threads; 0: all.
    tol : float
        :func:`~mtpfit.active.maxvol.maxvol`'s swap tolerance: afterwards every training configuration has
        γ ≤ tol.
    mode : {"configuration", "neighbourhood"}
        One row per configuration, or per atom (:data:`MODES`).

    Returns
    -------
    ActiveSet

    Raises
    ------
    ValueError
        If the independent columns' rows have rank below their number (the message names the rank and the
        dataset), or from
        :func:`configuration_rows`.
    """
    rows, owner = _rows(mtp, dataset, mode, n_threads)
    columns = independent_columns(rows)
    rows = rows[:, columns]
    try:
        indices, _ = maxvol(rows, tol=tol)
    except ValueError as error:
        raise ValueError(f"{dataset.name}: no active set: {error}") from error
    members = rows[indices]
    first = np.searchsorted(owner, owner[indices])  # each member's first row of its configuration
    sources = [dataset[int(owner[i])].source + ("" if mode == "configuration" else f", atom {int(i - f)}")
               for i, f in zip(indices, first)]
    return ActiveSet(potential_digest(mtp), members, np.linalg.inv(members), sources, columns, mode)


def grade(active_set: ActiveSet, mtp: MTP, dataset: Dataset, n_threads: int = 0) -> np.ndarray:
    """Extrapolation grade γ_k = max_j |(b_k A⁻¹)_j| of every configuration of ``dataset``.

    Parameters
    ----------
    active_set : ActiveSet
        Built with ``mtp``.
    mtp : MTP
    dataset : Dataset
        Labels are not needed.
    n_threads : int
        OpenMP threads; 0: all.

    Returns
    -------
    ndarray, shape (K,)
        Dimensionless; 1 for a member, ≤ 1 (+ maxvol's tolerance) inside the training set, > 1 outside.

    Raises
    ------
    ValueError
        If ``active_set`` was built for another potential, or from :func:`configuration_rows`.
    """
    active_set.check(mtp)
    rows, owner = _rows(mtp, dataset, active_set.mode, n_threads)
    per_row = active_set.grades(rows)
    return np.maximum.reduceat(per_row, np.searchsorted(owner, np.arange(len(dataset))))


def atom_grades(active_set: ActiveSet, mtp: MTP, dataset: Dataset, n_threads: int = 0) -> list[np.ndarray]:
    """The γ of every atom's neighbourhood (neighbourhood mode), one array (N_k,) per configuration.

    Raises
    ------
    ValueError
        If ``active_set`` is not a neighbourhood-mode set of ``mtp``.
    """
    active_set.check(mtp)
    if active_set.mode != "neighbourhood":
        raise ValueError("per-atom grades need a neighbourhood-mode active set (build_active_set(..., "
                         "mode='neighbourhood'))")
    rows, owner = neighbourhood_rows(mtp, dataset, n_threads)
    per_row = active_set.grades(rows)
    return np.split(per_row, np.searchsorted(owner, np.arange(1, len(dataset))))


def select(active_set: ActiveSet, mtp: MTP, candidates: Dataset, threshold: float = 1.001,
           max_new: int | None = None, n_threads: int = 0) -> tuple[np.ndarray, ActiveSet]:
    """Candidates worth computing with DFT: greedy "select-add" into the active set (MLIP-2 ``mlp select-add``).

    Repeatedly swaps in the row of largest grade while that grade exceeds ``threshold``, each swap multiplying
    |det A| by the grade (:func:`~mtpfit.active.maxvol.grow`). In configuration mode the rows are the
    candidates' (:func:`configuration_rows`). In neighbourhood mode they are the rows of every atom of every
    candidate (:func:`neighbourhood_rows`): the atom of largest grade is swapped in, and the configurations
    selected are those that own at least one atom of the updated set, since a DFT label is computed for a whole
    configuration. Cost, beyond computing the rows: O(m n²) for m candidate rows (atoms in neighbourhood mode) and
    an n-column set, then O(m n) a swap: for 2000 atoms and n = 100, 1–1.5 ms a swap, well below the cost of
    the rows themselves.

    Parameters
    ----------
    active_set : ActiveSet
        Built with ``mtp``; not changed.
    mtp : MTP
    candidates : Dataset
        Configurations to choose from (labels are not needed).
    threshold : float
        Least grade worth a swap, ≥ 1.
    max_new : int, optional
        Most configurations selected. Configuration mode: most swaps. Neighbourhood mode: most distinct
        configurations owning members of the updated set (what the labels cost); once that many are in, swaps go
        on only among the atoms that keep the count (those of the configurations already in), so no atom of a
        selected configuration is left above ``threshold``, while atoms of the others may be. Default: until no
        row exceeds ``threshold``.
    n_threads : int
        OpenMP threads; 0: all.

    Returns
    -------
    chosen : ndarray of int
        Indices into ``candidates`` of the selected configurations, each once, in the order their first member row
        was added; at most ``max_new``.
    updated : ActiveSet
        The active set with the rows swapped in. Its members' sources are the candidates' ``source``; in
        neighbourhood mode ``"<source>, atom <i>"`` with i the atom's 0-based index in its configuration, as
        :func:`build_active_set` names them.

    Raises
    ------
    ValueError
        If ``active_set`` was built for another potential, for ``threshold`` < 1 or ``max_new`` < 0, or from
        :func:`configuration_rows` / :func:`neighbourhood_rows`.
    """
    active_set.check(mtp)
    rows, owner = _rows(mtp, candidates, active_set.mode, n_threads)
    per_atom = active_set.mode == "neighbourhood"
    picked, new_rows, inverse, origin = grow(active_set.rows, active_set.inverse, rows[:, active_set.columns],
                                             threshold, max_new, groups=owner if per_atom else None)
    chosen = np.array(list(dict.fromkeys(owner[picked].tolist())), dtype=int)
    first = np.searchsorted(owner, owner)  # each row's configuration's first row: atom i is row first + i
    sources = [active_set.sources[j] if k < 0 else candidates[int(owner[k])].source
               + (f", atom {int(k - first[k])}" if per_atom else "") for j, k in enumerate(origin)]
    return chosen, ActiveSet(active_set.digest, new_rows, inverse, sources, active_set.columns, active_set.mode)
