"""The active-learning loop of MTP training: train, explore with molecular dynamics, select the extrapolating
frames, label them, retrain, until the explorations stop extrapolating.

One cycle k (Podryabinkin and Shapeev, Comput. Mater. Sci. 140, 171 (2017), §3; the loop MLIP-2 users script
around ``mlp train``, ``mlp select-add`` and LAMMPS):

1. train on every labelled configuration (cycle 0 from scratch at ``level``, later from the previous cycle's
   potential), write ``cycleKKK.mtp`` and the MaxVol active set of the training set next to it, built in
   ``mode`` (:mod:`mtpfit.active.grade`): one row per configuration (``"configuration"``, the default) or one
   per atom's neighbourhood (``"neighbourhood"``, MLIP's per-atom grade);
2. explore: MD from each seed with the new potential (:class:`mtpfit.MTPCalculator`) at each temperature,
   Langevin NVT (:class:`ase.md.langevin.Langevin`) in the seed's cell, or, with ``pressures``, NPT at each
   (temperature, pressure) pair with the Martyna–Tobias–Klein equations (:class:`ase.md.nose_hoover_chain.MTKNPT`:
   cell volume and shape follow the pressure), grading a frame every ``grade_every`` steps (in neighbourhood
   mode a frame's γ is the largest of its atoms'); a frame with
   γ > ``gamma_select`` is a candidate, one with γ > ``gamma_break`` is a candidate too and ends that exploration
   (the trajectory has left what the potential knows, so its later frames are not worth following);
3. select the candidates that enlarge the active set's volume by more than ``select_threshold`` (MaxVol
   select-add, :func:`mtpfit.active.select`), at most ``max_selected`` configurations (in neighbourhood mode the
   atoms of the candidates are swapped in, and the configurations owning them are selected);
4. label them with the labeller (energy, forces, and the stress of cells periodic in three directions).

It ends when an exploration selects nothing (converged: the last potential was trained on every label) or after
``max_cycles`` explorations, when the labels of the last one are trained on once more.

Every step is checkpointed in the output folder, so a killed loop resumes by calling :func:`learn` again with the
same settings and folder and never computes a label twice:

* ``labelled.cfg``: every labelled configuration (the seeds first, in order), rewritten atomically after each
  label (MLIP ``.cfg``, which keeps every float bit for bit, so a resumed loop trains on exactly what the
  uninterrupted one would);
* ``cycleKKK_selected.cfg``: the configurations an exploration chose, unlabelled; labelling resumes inside it;
* ``cycleKKK_frames.cfg``: every frame the cycle's explorations graded, unlabelled, its γ as the feature
  ``MV_grade`` (what the selection chose from) and, in neighbourhood mode, each atom's γ as the ``AtomData`` column
  ``nbh_grades`` (as MLIP writes them; ``MV_grade`` is their largest, the same float);
* ``state.json``: the cycle, its phase (``seeds``, ``train``, ``explore``, ``label``, ``done``), the settings the
  loop was started with and the summary rows so far;
* ``cycleKKK.mtp`` and ``cycleKKK.mtp.als.npz``: the potential of each cycle and its active set (what
  ``mtpfit grade`` reads), ``final.mtp`` the last one;
* ``summary.csv`` and ``summary.png``: one row per training.
"""
from __future__ import annotations

import dataclasses

import csv
import hashlib
import io
import json
import math
import numbers
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data.configuration import Configuration
from ..data.dataset import Dataset
from ..data.neighbors import ShortDistanceWarning
from ..io.cfg import read_cfg, write_cfg
from ..io.errors import FormatError
from ..potential.mtp import LEVELS, MTP, AbsurdEnergyWarning
from ..train.checkpoint import write_atomically, write_text_atomically
from .grade import MODES, active_set_path, atom_grades, build_active_set, grade, select

__all__ = ["LearningConfig", "LearningResult", "learn", "LABELLERS", "resolve_labeller"]

#: First entry of ``state.json``; a file without it is not a loop's state.
STATE_FORMAT = "mtpfit-learn-1"


def _emt():
    from ase.calculators.emt import EMT

    return EMT()


#: Labellers known by name: a factory of an ASE calculator each. ``"emt"``, ASE's effective-medium theory (Al, Cu,
#: Ag, Au, Ni, Pd, Pt, H, C, N, O), is for tests and demonstrations only.
LABELLERS: dict[str, Callable[[], Any]] = {"emt": _emt}

#: The summary's columns (one row per training; exploration columns are empty after the last training).
COLUMNS = ("cycle", "labelled", "train_force_rmse", "validation_force_rmse", "frames", "candidates", "breaks",
           "max_gamma", "selected", "train_seconds", "explore_seconds", "label_seconds", "wall_seconds")

#: Settings a resumed loop may change: budgets, resources and where it writes, and the labeller (a callable cannot be
#: compared with the one before: a loop resumed with the same VASP settings under a new lambda is the same loop, so
#: keeping the labels consistent is the caller's part); any other change is refused.
RESUMABLE = frozenset({"max_cycles", "threads", "output", "labeller"})

#: Settings ``state.json`` records only when they differ from these defaults (the record of a loop started before
#: they existed lacks them); a missing one is compared, and reported, as its default.
UNRECORDED_DEFAULTS = {"mode": "configuration"}

_PATHS = (str, os.PathLike)


def resolve_labeller(labeller) -> Callable[[], Any]:
    """The calculator factory of ``labeller``: a callable as is; a name of :data:`LABELLERS`; or
    ``"module:attribute"``, imported (``"mylabellers:vasp"`` for a ``vasp()`` in ``mylabellers.py`` on the Python
    path: how a TOML file names a DFT labeller).

    Raises
    ------
    ValueError
        For an unknown name (listing the known ones), a ``module:attribute`` that cannot be imported or is not
        callable, or anything else that is not callable.
    """
    if isinstance(labeller, str):
        module, colon, attribute = labeller.partition(":")
        if colon:
            import importlib

            try:
                factory = getattr(importlib.import_module(module), attribute)
            except (ImportError, AttributeError) as error:
                raise ValueError(f"labeller {labeller!r} cannot be imported: {error}") from error
            if not callable(factory):
                raise ValueError(f"labeller {labeller!r} is not callable")
            return factory
        if labeller.lower() not in LABELLERS:
            raise ValueError(f"unknown labeller {labeller!r}; known by name: {', '.join(LABELLERS)}; else "
                             f"'module:function' of a function returning an ASE calculator (e.g. VASP), or that "
                             f"function itself")
        return LABELLERS[labeller.lower()]
    if not callable(labeller):
        raise ValueError(f"labeller must be a name ({', '.join(LABELLERS)}), 'module:function' or a callable "
                         f"returning an ASE calculator, got {labeller!r:.100}")
    return labeller


def _number(name: str, value, low: float, inclusive: bool = True, integer: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value < low if inclusive else value <= low):
        bound = f"{'at least' if inclusive else 'above'} {low:g}"
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} {bound}, got {value!r:.100}")


@dataclass
class LearningConfig:
    """Settings of an active-learning loop (:func:`learn`), checked on construction.

    Parameters
    ----------
    seeds : list of ase.Atoms or path
        Starting structures: the first training set and the starting points of every exploration. A path is read
        with :func:`mtpfit.io.read_configurations` (every configuration in it; ``.cfg`` files need ``species``).
        A seed that carries an energy and forces (a file with labels, or Atoms whose calculator holds results) is
        taken as labelled; the others are labelled with ``labeller``. The first training needs at least one
        configuration; the active set spans only the directions the labelled set spans, so a handful of distinct
        seeds (rattled, strained) gives more telling grades in the first cycle.
    labeller : callable or str
        A factory called with no argument for every configuration to label, returning an ASE calculator; give
        VASP, Quantum ESPRESSO or GPAW with their settings this way, e.g.
        ``lambda: Vasp(xc="PBE", encut=520, kpts=(4, 4, 4), directory="dft")``. A fresh calculator per label keeps
        a failed DFT run from affecting the next. ``"emt"`` (:data:`LABELLERS`) is ASE's EMT, for tests and demos;
        ``"module:function"`` names a factory to import (:func:`resolve_labeller`), as a TOML file must.
    species : list of str, optional
        Element of each potential type 0 … S−1; default: the seeds' elements, sorted.
    validation : list of path or Dataset, optional
        A labelled test set whose force RMSE is reported every cycle (never trained on).
    level : int
        MTP level of the first training (:data:`mtpfit.potential.mtp.LEVELS`); later ones start from the
        previous potential.
    min_dist, max_dist : float, optional
        R_min and R_cut of the radial basis, Å (default: :class:`~mtpfit.TrainingConfig`'s, 2.0 and 5.0).
    optimizer : str
        Trainer of every retraining (:class:`~mtpfit.TrainingConfig`'s names).
    max_iter : int
        Iterations of every retraining.
    temperatures : list of float
        Temperatures of the explorations, K; each seed is explored at each.
    pressures : list of float, optional
        External pressures of NPT explorations, GPa (positive compresses; 1 GPa = 10 kbar = ``ase.units.GPa`` =
        1/160.2 eV/Å³); each seed is then explored at every (temperature, pressure) pair with
        :class:`ase.md.nose_hoover_chain.MTKNPT`, its cell's volume and shape free. Every seed must be periodic in
        three directions and carry no ASE constraints (MTKNPT supports none). ``None`` (the default): Langevin NVT
        in each seed's cell.
    barostat_time : float
        Time scale τ_P of the NPT barostat, fs (MTKNPT's ``pdamp``: barostat mass W = (N + 1) k_B T τ_P²); the
        volume oscillates about its mean with a period of roughly τ_P / 5 (EMT Cu at 300 K), so an exploration
        should last a few of those. The default, 1000 fs, is ASE's usual 1000 time steps of 1 fs; used only with
        ``pressures``.
    steps : int
        MD steps of one exploration.
    timestep : float
        MD time step, fs.
    friction : float
        Langevin friction of NVT, 1/fs (0.01: velocities decorrelate in ~100 fs); in NPT its inverse is the time
        scale of the Nosé–Hoover chain thermostat (MTKNPT's ``tdamp``, 100 fs for 0.01).
    grade_every : int
        Steps between graded frames.
    mode : {"configuration", "neighbourhood"}
        What the active set is built from, grades and selects (:data:`mtpfit.active.grade.MODES`):
        ``"configuration"`` (default), one row per configuration, γ of the whole frame; ``"neighbourhood"``, one
        row per atom (MLIP's neighbourhood mode), a frame's γ the largest of its atoms', which then flags a frame
        one atom of which extrapolates even when its mean row does not. The thresholds apply to that γ in either
        mode; ``max_selected`` counts configurations in both.
    gamma_select : float
        Frames with γ above this are candidates (MLIP's usual 2).
    gamma_break : float
        A frame with γ above this ends its exploration (MLIP's usual 10); above ``gamma_select``.
    select_threshold : float
        Least volume gain for which select-add takes a candidate (≥ 1; MLIP-2's ``select-add`` default 1.001):
        the candidates already extrapolate beyond ``gamma_select``, so this only drops those a better candidate
        of the same exploration made redundant.
    max_selected : int
        Most configurations labelled per cycle.
    max_cycles : int
        Most explorations; 0 only trains on the seeds.
    seed : int
        Seeds the MD's velocities and Langevin noise (one stream per cycle, temperature, pressure and seed
        structure, so a resumed exploration repeats the uninterrupted one).
    threads : int
        OpenMP threads of training, MD and grading (0: all cores).
    output : path
        The loop's folder (created); rerunning with the same folder resumes.

    Raises
    ------
    ValueError
        For a setting of the wrong type or range, naming it; with ``pressures``, for an ``ase.Atoms`` seed that is
        not periodic in three directions or has constraints, naming it (seeds read from files are checked when
        :func:`learn` reads them).
    """

    seeds: list
    labeller: Any = "emt"
    species: list | None = None
    validation: Any = None
    level: int = 10
    min_dist: float | None = None
    max_dist: float | None = None
    optimizer: str = "varpro"
    max_iter: int = 200
    temperatures: list = field(default_factory=lambda: [300.0])
    pressures: list | None = None
    barostat_time: float = 1000.0
    steps: int = 1000
    timestep: float = 1.0
    friction: float = 0.01
    grade_every: int = 10
    mode: str = "configuration"
    gamma_select: float = 2.0
    gamma_break: float = 10.0
    select_threshold: float = 1.001
    max_selected: int = 20
    max_cycles: int = 10
    seed: int = 0
    threads: int = 0
    output: str = "mtpfit-learn"

    def __post_init__(self):
        from ase import Atoms

        if isinstance(self.seeds, (Atoms, *_PATHS)):
            self.seeds = [self.seeds]
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise ValueError(f"seeds must be a non-empty list of ase.Atoms or file names, got {self.seeds!r:.100}")
        for k, seed in enumerate(self.seeds):
            if not isinstance(seed, (Atoms, *_PATHS)):
                raise ValueError(f"seeds[{k}] is neither an ase.Atoms nor a file name: {seed!r:.100}")
        self.seeds = [s if isinstance(s, Atoms) else os.fspath(s) for s in self.seeds]
        resolve_labeller(self.labeller)
        if self.species is not None and (not isinstance(self.species, (list, tuple)) or not self.species
                                         or not all(isinstance(s, str) for s in self.species)):
            raise ValueError(f"species must be a non-empty list of element symbols, got {self.species!r:.100}")
        if isinstance(self.validation, _PATHS):
            self.validation = [os.fspath(self.validation)]
        if self.validation is not None and not isinstance(self.validation, Dataset) and not (
                isinstance(self.validation, (list, tuple)) and self.validation
                and all(isinstance(v, _PATHS) for v in self.validation)):
            raise ValueError(f"validation must be a Dataset or a list of file names, got {self.validation!r:.100}")
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(map(str, LEVELS))}, got {self.level!r}")
        for name in ("min_dist", "max_dist"):
            if getattr(self, name) is not None:
                _number(name, getattr(self, name), 0.0, inclusive=False)
        if self.min_dist is not None and self.max_dist is not None and self.min_dist >= self.max_dist:
            raise ValueError(f"min_dist {self.min_dist} must be below max_dist {self.max_dist}")
        if not isinstance(self.temperatures, (list, tuple)) or not self.temperatures:
            raise ValueError(f"temperatures must be a non-empty list of temperatures in K, got "
                             f"{self.temperatures!r:.100}")
        for T in self.temperatures:
            _number("every temperature", T, 0.0, inclusive=False)
        self.temperatures = [float(T) for T in self.temperatures]
        if self.pressures is not None:
            if not isinstance(self.pressures, (list, tuple)) or not self.pressures:
                raise ValueError(f"pressures must be a non-empty list of pressures in GPa (or None for NVT), got "
                                 f"{self.pressures!r:.100}")
            for P in self.pressures:
                if not (isinstance(P, numbers.Real) and not isinstance(P, bool) and math.isfinite(P)):
                    raise ValueError(f"every pressure must be a finite number of GPa, got {P!r:.100}")
            self.pressures = [float(P) for P in self.pressures]
            for k, seed in enumerate(self.seeds):
                if not isinstance(seed, str):
                    _check_npt_seed(seed, f"seeds[{k}] ({seed.get_chemical_formula()})")
        _number("barostat_time", self.barostat_time, 0.0, inclusive=False)
        for name in ("max_iter", "steps", "grade_every", "max_selected"):
            _number(name, getattr(self, name), 1, integer=True)
        for name in ("max_cycles", "seed", "threads"):
            _number(name, getattr(self, name), 0, integer=True)
        for name in ("timestep", "friction"):
            _number(name, getattr(self, name), 0.0, inclusive=False)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r:.100}")
        _number("gamma_select", self.gamma_select, 1.0)
        _number("select_threshold", self.select_threshold, 1.0)
        _number("gamma_break", self.gamma_break, self.gamma_select, inclusive=False)
        from ..train.config import canonical_optimizer

        self.optimizer = canonical_optimizer(self.optimizer)
        self.output = os.fspath(self.output)

    @classmethod
    def from_toml(cls, path) -> "LearningConfig":
        """Read the settings from a TOML file of this class's fields (what ``mtpfit learn CONFIG.toml`` takes).

        Relative ``seeds``, ``validation`` and ``output`` paths are taken relative to the file's folder; the
        labeller is a name or ``"module:function"`` (:func:`resolve_labeller`); ``output`` defaults to
        ``mtpfit-learn`` next to the file.

        Raises
        ------
        ValueError
            For a file that is not TOML or names unknown settings (naming the file), or from construction,
            prefixed with the file's name.
        """
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib

        path = Path(path)
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ValueError(f"{path}: {error}") from error
        unknown = sorted(set(table) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: "
                             f"{', '.join(cls.__dataclass_fields__)}")
        if "seeds" not in table:
            raise ValueError(f"{path}: no seeds (a list of structure files)")
        here = path.parent

        def near(value):
            return [os.fspath(here / v) for v in value] if isinstance(value, list) else os.fspath(here / value)

        try:
            table = {**table, "output": near(table.get("output", "mtpfit-learn"))}
            for name in ("seeds", "validation"):
                if isinstance(table.get(name), (str, list)):
                    table[name] = near(table[name])
            return cls(**table)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error

    def settings(self) -> dict:
        """The JSON record of the settings (``state.json``): seeds as file names or ``<Atoms k: formula sha256:…>``
        (a digest of numbers, positions, cell and pbc), a callable labeller by its qualified name, an in-memory
        validation set by its name and size; ``pressures`` and ``barostat_time`` only for NPT explorations, ``mode``
        only when not ``"configuration"`` (so the record of a loop started before these settings existed, and the
        resumption of its folder, are as before)."""
        record = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if self.pressures is None and name in ("pressures", "barostat_time"):
                continue  # NVT: the record (and so the resumption of a loop of an earlier version) is as before
            if name in UNRECORDED_DEFAULTS and value == UNRECORDED_DEFAULTS[name]:
                continue  # the same for a setting at its default that older loops did not have
            if name == "seeds":
                value = [s if isinstance(s, str) else f"<Atoms {k}: {s.get_chemical_formula()} {_digest(s)}>"
                         for k, s in enumerate(value)]
            elif name == "labeller" and not isinstance(value, str):
                value = f"<{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}>"
            elif name == "validation" and isinstance(value, Dataset):
                value = f"<Dataset {value.name}: {len(value)} configurations>"
            record[name] = value
        return record


def _check_npt_seed(atoms, name: str) -> None:
    """Refuse a seed MTKNPT cannot explore: a barostat needs a volume (periodic along all three cell vectors), and
    MTKNPT supports no constraints."""
    if not np.all(atoms.pbc):
        raise ValueError(f"{name} is not periodic in three directions (pbc {atoms.pbc.tolist()}): NPT explorations "
                         f"(pressures) need a periodic cell; explore it without pressures")
    if atoms.constraints:
        raise ValueError(f"{name} has constraints ({', '.join(type(c).__name__ for c in atoms.constraints)}), which "
                         f"ASE's MTKNPT of NPT explorations (pressures) does not support")


def _digest(atoms) -> str:
    h = hashlib.sha256()
    for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
        h.update(np.ascontiguousarray(array).tobytes())
    return "sha256:" + h.hexdigest()[:16]


@dataclass
class LearningResult:
    """What :func:`learn` leaves.

    Attributes
    ----------
    mtp : MTP
        The last potential (trained on every label when ``reason`` is ``"converged"`` or ``"max_cycles"``).
    potential : Path
        Its file, ``final.mtp`` in the output folder.
    labelled : Dataset
        Every labelled configuration, seeds first (energies eV, forces eV/Å, PlusStress eV).
    rows : list of dict
        The summary, one row per training (:data:`COLUMNS`).
    reason : str
        ``"converged"`` (an exploration selected nothing) or ``"max_cycles"``.
    files : dict of str to Path
        ``labelled``, ``state``, ``summary_csv``, ``summary_png``, ``potential``.
    """

    mtp: MTP
    potential: Path
    labelled: Dataset
    rows: list
    reason: str
    files: dict

    @property
    def converged(self) -> bool:
        """Whether the last exploration found nothing to select."""
        return self.reason == "converged"


# ------------------------------------------------------------------------------------------------ configurations

def _configuration(atoms, source: str, energy=None, forces=None, stress=None, group=None) -> Configuration:
    """An ASE Atoms as a Configuration; ``stress`` is ASE's σ (3, 3), eV/Å³, stored as PlusStress −σ·V, eV."""
    cell = np.array(atoms.cell.array, dtype=float)
    has_cell = bool(np.any(cell != 0.0) or np.any(atoms.pbc))
    plus_stress = None if stress is None else -np.asarray(stress, float) * abs(np.linalg.det(cell))
    return Configuration(positions=atoms.positions, species=np.array(atoms.get_chemical_symbols()),
                         cell=cell if has_cell else None, pbc=np.array(atoms.pbc) if has_cell else None,
                         energy=energy, forces=forces, plus_stress=plus_stress, group=group, source=source,
                         features={"origin": source})


def _stored(atoms) -> tuple | None:
    """``(stress (3, 3) or None, energy, forces)`` the Atoms' calculator already holds (a file's or an earlier
    calculation's), else ``None``."""
    results = getattr(atoms.calc, "results", None) or {}
    if "energy" not in results or "forces" not in results:
        return None
    stress = results.get("stress")
    if stress is not None and np.shape(stress) == (6,):  # Voigt xx yy zz yz xz xy
        stress = np.asarray(stress)[[[0, 5, 4], [5, 1, 3], [4, 3, 2]]]
    return stress, results["energy"], results["forces"]


def _label(factory, atoms, source: str, group: str) -> Configuration:
    """Energy, forces and (periodic in 3D) stress of ``atoms`` from a fresh calculator of ``factory``."""
    atoms = atoms.copy()
    atoms.calc = factory()
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces(apply_constraint=False)  # a seed's constraints are the MD's business, not the label's
    stress = atoms.get_stress(voigt=False) if np.all(atoms.pbc) else None
    return _configuration(atoms, source, energy, forces, stress, group)


def _read_seeds(config: LearningConfig) -> list:
    """The seeds as Atoms, each with the name it is reported by."""
    from ..io import read_configurations

    seeds = []
    for k, seed in enumerate(config.seeds):
        if isinstance(seed, str):
            data = read_configurations(seed, species=config.species)
            seeds += [(c.to_ase(), c.source) for c in data]
        else:
            seeds.append((seed.copy(), f"seed {k} ({seed.get_chemical_formula()})"))
            seeds[-1][0].calc = seed.calc  # keep stored labels; copy() drops the calculator
    return seeds


# ------------------------------------------------------------------------------------------------ folder

class _Folder:
    """The loop's files and its state, each written atomically."""

    def __init__(self, config: LearningConfig, species: list):
        self.path = Path(config.output)
        self.path.mkdir(parents=True, exist_ok=True)
        self.species = species
        self.labelled_path = self.path / "labelled.cfg"
        self.state_path = self.path / "state.json"
        settings = {**config.settings(), "species": species}
        if self.state_path.exists():
            self.state = self._read_state(settings)
        else:
            self.state = {"format": STATE_FORMAT, "settings": settings, "cycle": 0, "phase": "seeds",
                          "labelled_before": 0, "row": {}, "rows": [], "reason": None}
            self.save_state()  # from the first label on, a rerun must find the settings it has to match
        self.labelled = (read_cfg(self.labelled_path, species=species) if self.labelled_path.exists() else [])

    def _read_state(self, settings: dict) -> dict:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise FormatError(self.state_path, f"cannot be read as the loop's state: {error}") from error
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise FormatError(self.state_path, f"is not the state of an mtpfit learning loop (needs format "
                                               f"{STATE_FORMAT!r})")
        old = {**UNRECORDED_DEFAULTS, **state.get("settings", {})}
        settings = {**UNRECORDED_DEFAULTS, **settings}
        changed = sorted(k for k in set(old) | set(settings) if k not in RESUMABLE and old.get(k) != settings.get(k))
        if changed:
            details = "; ".join(f"{k}: {old.get(k)!r:.60} then, {settings.get(k)!r:.60} now" for k in changed)
            raise ValueError(f"{self.state_path}: the loop in this folder was started with other settings "
                             f"({details}); use another output folder, or the same settings to resume")
        return state

    def save_state(self) -> None:
        write_text_atomically(self.state_path, json.dumps(self.state, indent=1))

    def add_label(self, configuration: Configuration) -> None:
        self.labelled.append(configuration)
        tmp = self.labelled_path.with_name(self.labelled_path.name + ".tmp")
        write_cfg(tmp, self.labelled, species_order=self.species)
        os.replace(tmp, self.labelled_path)

    def potential(self, cycle: int) -> Path:
        return self.path / f"cycle{cycle:03d}.mtp"

    def selected(self, cycle: int) -> Path:
        return self.path / f"cycle{cycle:03d}_selected.cfg"

    def dataset(self) -> Dataset:
        return Dataset(list(self.labelled), "labelled")

    def write_summary(self) -> dict:
        rows = self.state["rows"] + ([self.state["row"]] if self.state["row"] else [])
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
        paths = {"summary_csv": self.path / "summary.csv", "summary_png": self.path / "summary.png"}
        write_text_atomically(paths["summary_csv"], text.getvalue())
        _plot(paths["summary_png"], rows)
        return paths


def _plot(path: Path, rows: list) -> None:
    """Labelled configurations and force RMSE per cycle (matplotlib's object API on Agg: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    count, error = figure.subplots(1, 2)
    cycles = [row["cycle"] for row in rows]
    count.plot(cycles, [row["labelled"] for row in rows], "o-")
    count.set(xlabel="cycle", ylabel="labelled configurations", title="Training set")
    for key, name in (("train_force_rmse", "training"), ("validation_force_rmse", "validation")):
        points = [(row["cycle"], row[key]) for row in rows if row.get(key) is not None]
        if points:
            error.plot(*zip(*points), "o-", label=name)
    error.set(xlabel="cycle", ylabel="force RMSE per component (eV/Å)", title="Errors after training")
    if error.lines:
        error.legend()
    for axes in (count, error):
        axes.xaxis.get_major_locator().set_params(integer=True)
    tmp = path.with_name(path.name + ".tmp.png")
    figure.savefig(tmp, dpi=100)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ the phases

def _train(config: LearningConfig, folder: _Folder, validation: Dataset | None, cycle: int, log) -> MTP:
    from ..train.fit import fit

    train = folder.dataset()
    start = {} if cycle == 0 else {"init_potential": os.fspath(folder.potential(cycle - 1))}
    began = time.perf_counter()
    run = fit(train=train, validation=validation if validation is not None else train, output=None,
              level=config.level, min_dist=config.min_dist, max_dist=config.max_dist, species=folder.species,
              optimizer=config.optimizer, max_iter=config.max_iter, threads=config.threads, seed=config.seed,
              quiet=True, **start)
    seconds = time.perf_counter() - began
    path = folder.potential(cycle)
    write_atomically(run.mtp, path)
    train_rmse = run.errors["train"]["all"]["force_rmse"]
    validation_rmse = run.errors["validation"]["all"]["force_rmse"] if validation is not None else None
    folder.state["row"] = {"cycle": cycle, "labelled": len(train), "train_force_rmse": train_rmse,
                           "validation_force_rmse": validation_rmse, "train_seconds": round(seconds, 3)}
    shown = "" if validation_rmse is None else f", validation {validation_rmse:.4f}"
    log(f"cycle {cycle}: trained on {len(train)} configurations in {seconds:.1f} s (force RMSE train "
        f"{train_rmse:.4f} eV/Å{shown}) -> {path}")
    return MTP.read(path)


def _dynamics(config: LearningConfig, atoms, temperature: float, pressure: float | None, rng):
    """The MD of one exploration of ``atoms`` (its calculator set) at ``temperature`` K and, unless ``None``,
    ``pressure`` GPa, its momenta drawn from ``rng`` at that temperature."""
    from ase import units
    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # ASE < 3.29 names it so
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

    if pressure is None:
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin

        # ASE ≥ 3.28: Langevin's own fixcm is deprecated (it does not sample NVT exactly); FixCom is its successor
        atoms.set_constraint(atoms.constraints + [FixCom()])
        thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
        return Langevin(atoms, config.timestep * units.fs, temperature_K=temperature,
                        friction=config.friction / units.fs, fixcm=False, rng=rng)
    from ase.md.nose_hoover_chain import MTKNPT

    # MTKNPT integrates the Martyna–Tobias–Klein equations (J. Chem. Phys. 101, 4177 (1994)), which sample the NPT
    # ensemble exactly (Hoover's and Melchionna's, ase.md.npt.NPT, do not, and NPT wants an upper-triangular cell;
    # Berendsen's samples no ensemble; LangevinBAOAB's barostat mass is an empirical heuristic), with the full 3×3
    # cell as a variable: any triclinic cell, its shape free to follow anisotropic stress; and it is deterministic,
    # so the momenta drawn from rng fix the whole exploration. The centre of mass is left to move:
    # the Nosé–Hoover chain thermostats all 3N momenta, so removing its momentum would heat the 3N − 3 others.
    # MTKNPT copies positions and momenta when it is built: the momenta are drawn first.
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    return MTKNPT(atoms, config.timestep * units.fs, temperature_K=temperature, pressure_au=pressure * units.GPa,
                  tdamp=units.fs / config.friction, pdamp=config.barostat_time * units.fs)


def _explore(config: LearningConfig, mtp: MTP, active, seeds: list, cycle: int, log) -> tuple[list, list, dict]:
    """Every exploration of one cycle: the candidates (γ > gamma_select), every graded frame (with its γ as the
    feature ``MV_grade`` and, for a neighbourhood-mode ``active``, its atoms' γ as ``atom_data["nbh_grades"]``)
    and counts."""
    from ..calculator import MTPCalculator

    candidates, graded, frames, breaks, largest = [], [], 0, 0, 0.0
    for t, temperature in enumerate(config.temperatures):
        for p, pressure in enumerate(config.pressures or [None]):
            for s, (seed, name) in enumerate(seeds):
                # NVT keeps the streams of the loop before pressures existed
                rng = np.random.default_rng([config.seed, cycle, t, s] + ([] if pressure is None else [p]))
                atoms = seed.copy()
                atoms.calc = MTPCalculator(mtp, n_threads=config.threads)
                dynamics = _dynamics(config, atoms, temperature, pressure, rng)
                where = f"{temperature:g} K" + ("" if pressure is None else f", {pressure:g} GPa")
                done, stopped = 0, ""
                while done < config.steps and not stopped:
                    stride = min(config.grade_every, config.steps - done)
                    try:
                        dynamics.run(stride)
                    except (FloatingPointError, ValueError) as error:
                        # a potential far outside its data can blow atoms together (or, in NPT, the cell apart):
                        # the exploration ends there
                        stopped = f"MD failed at step {done + stride}: {error}"
                        breaks += 1
                        break
                    done += stride
                    source = f"cycle {cycle}, {where} from {name}, step {done}"
                    frame = _configuration(atoms, source, group=f"cycle{cycle:03d}")
                    # graded here, not by MTPCalculator(active_set=…): the calculator grades every step, on its own
                    # neighbour list, at about a fifth of what a grade() with a fresh list costs (EMT-Cu level 10,
                    # 108 and 864 atoms), so at grade_every ≥ 6 this is cheaper; and it keeps no per-atom grades
                    one = Dataset([frame], source)
                    if active.mode == "neighbourhood":
                        atoms_gamma = atom_grades(active, mtp, one, n_threads=config.threads)[0]
                        gamma, extra = float(atoms_gamma.max()), {"nbh_grades": atoms_gamma}
                    else:
                        gamma, extra = float(grade(active, mtp, one, n_threads=config.threads)[0]), {}
                    frames += 1
                    graded.append(dataclasses.replace(frame, features={**frame.features, "MV_grade": f"{gamma:.17g}"},
                                                      atom_data={**frame.atom_data, **extra}))
                    largest = max(largest, gamma)
                    if gamma > config.gamma_select:
                        candidates.append(frame)
                    if gamma > config.gamma_break:
                        stopped, breaks = f"γ = {gamma:.3g} > {config.gamma_break:g} at step {done}", breaks + 1
                log(f"cycle {cycle}: {where} from {name}: {done} steps"
                    + (f", stopped ({stopped})" if stopped else ""))
    return candidates, graded, {"frames": frames, "candidates": len(candidates), "breaks": breaks,
                                "max_gamma": round(largest, 6)}


def learn(config: LearningConfig | dict, log: Callable[[str], None] | None = print) -> LearningResult:
    """Run (or resume) the active-learning loop of ``config`` (the module's docstring describes the cycle and
    the files).

    Parameters
    ----------
    config : LearningConfig or dict
        A dict is passed to :class:`LearningConfig`.
    log : callable, optional
        Receives one line per training, exploration and label; ``None``: silent.

    Returns
    -------
    LearningResult

    Raises
    ------
    ValueError
        For bad settings, a folder whose loop was started with other settings (naming ``state.json`` and the
        settings that differ), or from training and grading (e.g. elements the species lack).
    mtpfit.io.FormatError
        For an unreadable ``state.json``, ``labelled.cfg`` or seed file.
    Exception
        Whatever the labeller raises propagates; every label computed before it is kept, and rerunning resumes.
    """
    if isinstance(config, dict):
        config = LearningConfig(**config)
    say = log or (lambda line: None)
    factory = resolve_labeller(config.labeller)
    seeds = _read_seeds(config)
    if config.pressures is not None:
        for atoms, name in seeds:
            _check_npt_seed(atoms, name)
    species = list(config.species) if config.species else sorted({s for a, _ in seeds
                                                                  for s in a.get_chemical_symbols()})
    folder = _Folder(config, species)
    state = folder.state
    validation = config.validation
    if validation is not None and not isinstance(validation, Dataset):
        from ..io import read_files

        validation = read_files(validation, species=species)
    began = time.perf_counter()
    if state["phase"] == "done" and state["reason"] == "max_cycles" and state["cycle"] < config.max_cycles:
        state["phase"] = "explore"  # a larger budget continues a loop that ran out of cycles
    if state["phase"] == "seeds":
        for k in range(len(folder.labelled), len(seeds)):
            atoms, name = seeds[k]
            stored = _stored(atoms)
            if stored is not None:
                stress, energy, forces = stored
                folder.add_label(_configuration(atoms, name, energy, forces, stress if np.all(atoms.pbc) else None,
                                                group="seed"))
            else:
                folder.add_label(_label(factory, atoms, name, "seed"))
                say(f"labelled {name}")
        state["phase"] = "train"
        folder.save_state()
    mtp = None
    while state["phase"] != "done":
        cycle = state["cycle"]
        row = state["row"]
        if state["phase"] == "train":
            mtp = _train(config, folder, validation, cycle, say)
            state["phase"] = "explore" if cycle < config.max_cycles else "done"
            state["reason"] = None if cycle < config.max_cycles else "max_cycles"
            folder.save_state()
            continue
        mtp = MTP.read(folder.potential(cycle))
        if state["phase"] == "explore":
            tick = time.perf_counter()
            active = build_active_set(mtp, folder.dataset(), n_threads=config.threads, mode=config.mode)
            active.save(active_set_path(folder.potential(cycle)))
            with warnings.catch_warnings():
                # hot frames come close to min_dist, an extrapolating potential predicts absurd site energies:
                # the grade says what either means, and ends the exploration
                warnings.simplefilter("ignore", ShortDistanceWarning)
                warnings.simplefilter("ignore", AbsurdEnergyWarning)
                candidates, graded, counts = _explore(config, mtp, active, seeds, cycle, say)
            # every graded frame, for inspection and for comparisons with other selections
            frames_path = folder.path / f"cycle{cycle:03d}_frames.cfg"
            if graded:
                write_cfg(frames_path.with_name(frames_path.name + ".tmp"), graded, species_order=species)
                os.replace(frames_path.with_name(frames_path.name + ".tmp"), frames_path)
            chosen = []
            if candidates:
                chosen, _ = select(active, mtp, Dataset(candidates, f"cycle {cycle} candidates"),
                                   threshold=config.select_threshold, max_new=config.max_selected,
                                   n_threads=config.threads)
            row.update(counts, selected=len(chosen), explore_seconds=round(time.perf_counter() - tick, 3))
            say(f"cycle {cycle}: {counts['frames']} frames graded, max γ {counts['max_gamma']:.3g}, "
                f"{len(candidates)} candidates, {len(chosen)} selected")
            if len(chosen):
                path = folder.selected(cycle)
                tmp = path.with_name(path.name + ".tmp")
                write_cfg(tmp, [candidates[int(i)] for i in chosen], species_order=species)
                os.replace(tmp, path)
                state.update(phase="label", labelled_before=len(folder.labelled))
            else:
                state.update(phase="done", reason="converged")
            folder.save_state()
            continue
        # phase "label": those of the selection not yet in labelled.cfg
        tick = time.perf_counter()
        chosen = read_cfg(folder.selected(cycle), species=species)
        for configuration in chosen[len(folder.labelled) - state["labelled_before"]:]:
            origin = configuration.features.get("origin", configuration.source)
            folder.add_label(_label(factory, configuration.to_ase(), origin, configuration.group))
            say(f"labelled {origin}")
        row["label_seconds"] = round(row.get("label_seconds", 0.0) + time.perf_counter() - tick, 3)
        row["wall_seconds"] = round(sum(row.get(k) or 0.0 for k in ("train_seconds", "explore_seconds",
                                                                     "label_seconds")), 3)
        state["rows"].append(row)
        state.update(cycle=cycle + 1, phase="train", row={})
        folder.save_state()
        folder.write_summary()
    row = state["row"]
    row["wall_seconds"] = round(sum(row.get(k) or 0.0 for k in ("train_seconds", "explore_seconds",
                                                                 "label_seconds")), 3)
    mtp = mtp or MTP.read(folder.potential(state["cycle"]))
    final = folder.path / "final.mtp"
    write_atomically(mtp, final)
    files = {"labelled": folder.labelled_path, "state": folder.state_path, "potential": final,
             **folder.write_summary()}
    folder.save_state()
    rows = state["rows"] + [row]
    say(f"{state['reason']} after {state['cycle']} cycles ({time.perf_counter() - began:.1f} s here): "
        f"{len(folder.labelled)} labelled configurations, potential {final}")
    return LearningResult(mtp, final, folder.dataset(), rows, state["reason"], files)
