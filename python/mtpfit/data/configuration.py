"""One atomic configuration with its DFT labels."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Configuration"]


@dataclass
class Configuration:
    """An atomic configuration and its (optional) DFT labels.

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
        Cartesian positions, Å.
    species : ndarray, shape (N,)
        Species of each atom: element symbols (``str``) or 0-based type indices (``int``),
        as the source file gives them. They are mapped to the potential's types when a
        training set is built.
    cell : ndarray, shape (3, 3), optional
        Lattice vectors as rows, Å. ``None`` for a molecule.
    pbc : ndarray, shape (3,), optional
        Periodicity along each cell vector. Defaults to ``True`` along every non-zero
        cell row, ``False`` without a cell.
    energy : float, optional
        Total energy, eV.
    forces : ndarray, shape (N, 3), optional
        Forces, eV/Å.
    plus_stress : ndarray, shape (3, 3), optional
        Virial stress in the MLIP "PlusStress" convention, eV, positive in compression:
        ``S = -sum_ij g_ij ⊗ r_ij`` (MTP_SPEC §5). ASE's stress is ``-S / V``.
    force_mask : ndarray of bool, shape (N,), optional
        ``True`` where the atom's force is labelled; ``None`` means every atom is.
    weights : dict, optional
        Per-residual loss weights as some files carry them (the study JSON):
        ``{"energy": float, "forces": ndarray (N, 3), "stress": ndarray (6,)}`` with the
        stress weights in Voigt order xx yy zz yz xz xy, each the weight of that Voigt
        component's squared residual (an off-diagonal component counted once); used by
        ``Loss(kind="file")``.
    group : str, optional
        ``config_type`` / group label, kept for per-group errors.
    source : str
        Where the configuration came from ("file.cfg, configuration 3 (line 41)"); used in
        error messages.
    features : dict
        Free-form metadata (``.cfg`` ``Feature`` lines, JSON descriptions).
    atom_data : dict of str to ndarray, optional
        Further per-atom values, each a float array of shape (N,) under its name: the ``.cfg`` ``AtomData``
        columns beyond id, type, coordinates and forces (e.g. MLIP's ``nbh_grades``, each atom's extrapolation
        grade γ, dimensionless), read and written by :func:`mtpfit.io.read_cfg` and :func:`mtpfit.io.write_cfg`.
        Metadata like ``features``: training does not use them.

    Raises
    ------
    ValueError
        On inconsistent shapes or non-finite values, naming :attr:`source`.
    """

    positions: np.ndarray
    species: np.ndarray
    cell: np.ndarray | None = None
    pbc: np.ndarray | None = None
    energy: float | None = None
    forces: np.ndarray | None = None
    plus_stress: np.ndarray | None = None
    force_mask: np.ndarray | None = None
    weights: dict[str, Any] | None = None
    group: str | None = None
    source: str = "<memory>"
    features: dict[str, Any] = field(default_factory=dict)
    atom_data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions = np.array(self.positions, dtype=float).reshape(-1, 3)
        self.species = np.asarray(self.species)
        n = len(self.positions)
        self._check(self.species.shape == (n,), f"{len(self.species)} species for {n} atoms")
        self._check(n > 0, "no atoms")
        self._check_finite("positions", self.positions)
        if self.cell is not None:
            self.cell = np.array(self.cell, dtype=float).reshape(3, 3)
            self._check_finite("cell", self.cell)
        if self.pbc is None:
            self.pbc = (np.zeros(3, bool) if self.cell is None
                        else np.any(self.cell != 0.0, axis=1))
        self.pbc = np.array(self.pbc, dtype=bool).reshape(3)
        if self.cell is None:
            self._check(not self.pbc.any(), "periodic without a cell")
        else:
            self._check(not np.any(self.pbc & ~np.any(self.cell != 0.0, axis=1)),
                        "periodic along a zero cell vector")
        if self.energy is not None:
            self.energy = float(self.energy)
            self._check(np.isfinite(self.energy), f"energy is {self.energy}")
        if self.forces is not None:
            self.forces = np.array(self.forces, dtype=float)
            self._check(self.forces.shape == (n, 3), f"forces of shape {self.forces.shape} for {n} atoms")
            self._check_finite("forces", self.forces)
        if self.plus_stress is not None:
            self.plus_stress = np.array(self.plus_stress, dtype=float).reshape(3, 3)
            self._check_finite("stress", self.plus_stress)
        if self.force_mask is not None:
            self.force_mask = np.array(self.force_mask, dtype=bool).reshape(n)
        atom_data = {}
        for name, values in dict(self.atom_data).items():
            self._check(isinstance(name, str) and bool(name), f"per-atom data named {name!r}")
            try:
                values = np.array(values, dtype=float)
            except (TypeError, ValueError):
                values = None
            self._check(values is not None and values.shape == (n,),
                        f"per-atom data {name!r} must be {n} numbers, one per atom, got shape "
                        f"{None if values is None else values.shape}")
            self._check_finite(f"per-atom data {name!r}", values)
            atom_data[name] = values
        self.atom_data = atom_data
        if self.weights is not None:
            w = dict(self.weights)
            w["energy"] = float(w.get("energy", 1.0))
            w["forces"] = np.broadcast_to(np.asarray(w.get("forces", 1.0), float), (n, 3)).copy()
            w["stress"] = np.broadcast_to(np.asarray(w.get("stress", 1.0), float), (6,)).copy()
            for key in ("energy", "forces", "stress"):
                self._check(np.all(np.isfinite(w[key])) and np.all(np.asarray(w[key]) >= 0),
                            f"{key} weights must be finite and non-negative")
            self.weights = w

    def _check(self, ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"{self.source}: {message}")

    def _check_finite(self, name: str, values: np.ndarray) -> None:
        self._check(bool(np.all(np.isfinite(values))), f"{name} contain NaN or infinity")

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def n_atoms(self) -> int:
        """Number of atoms N."""
        return len(self.positions)

    @property
    def volume(self) -> float | None:
        """Cell volume, Å³, or ``None`` when the configuration is not periodic in 3D."""
        if self.cell is None or not self.pbc.all():
            return None
        return float(abs(np.linalg.det(self.cell)))

    @property
    def labelled_forces(self) -> np.ndarray:
        """Boolean mask, shape (N,), of atoms whose force is labelled (all False without forces)."""
        if self.forces is None:
            return np.zeros(self.n_atoms, bool)
        return np.ones(self.n_atoms, bool) if self.force_mask is None else self.force_mask

    def to_ase(self):
        """Return an :class:`ase.Atoms` (species must be element symbols) with the labels
        attached through a :class:`ase.calculators.singlepoint.SinglePointCalculator`."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        symbols = [str(s) for s in self.species]
        atoms = Atoms(symbols=symbols, positions=self.positions,
                      cell=self.cell if self.cell is not None else np.zeros((3, 3)), pbc=self.pbc)
        results = {}
        if self.energy is not None:
            results["energy"] = self.energy
        if self.forces is not None:
            results["forces"] = self.forces
        if self.plus_stress is not None and self.volume:
            s = -self.plus_stress / self.volume
            results["stress"] = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms
