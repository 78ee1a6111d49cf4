"""ASE calculator: a thin adapter from :class:`ase.Atoms` to the core, for an MTP or an ETN."""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .data.configuration import Configuration
from .data.neighbors import VerletNeighbors
from .potential.etn import ETN
from .potential.mtp import MTP
from .potential.reader import read_potential

__all__ = ["MTPCalculator", "PotentialCalculator", "DEFAULT_SKIN", "ExtrapolationError"]


class ExtrapolationError(RuntimeError):
    """Raised by :class:`MTPCalculator` when a structure's extrapolation grade passes its ``gamma_break``: the
    potential is far outside its training set (MLIP's ``threshold_break``). ``grade`` holds γ, ``atoms`` a copy of
    the structure."""

    def __init__(self, message: str, grade: float, atoms):
        super().__init__(message)
        self.grade, self.atoms = grade, atoms

#: Verlet skin (Å) of the calculator's neighbour list. A list at cutoff + s holds ((r_c + s)/r_c)³ times the pairs
#: on average (1.46× at r_c = 5.2 Å; 2.2× in bcc Mo, whose fourth shell lies just past 5.2 Å), which are dropped
#: again before every evaluation (``Structure.within``: about 1 ms per 10⁵ listed pairs on 2 threads), and it is
#: rebuilt once some atom moved s/2 (a build of 2000 Mo atoms costs ~3 level-16 evaluations on 2 threads).
#: Measured with the mlearn Mo potential (../shared/data/mlearn/mtp_fitted, 2000 atoms of bcc Mo, 600 K start
#: equilibrating at ~250 K, 2 fs steps, 150 steps): s = 0.3 Å rebuilt 12 times, 0.5 Å 8 times, 0.7 Å and 1.0 Å
#: never after the first list, the largest thermal excursion (~0.3 Å) staying within s/2. 0.7 Å keeps a crystal's
#: list for good near room temperature; hot or diffusing systems rebuild more often. LAMMPS's default for metal
#: units, 2 Å, suits its cheaper pair styles.
DEFAULT_SKIN = 0.7

_VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])    # xx yy zz yz xz xy


class MTPCalculator(Calculator):
    """Energies, forces, stresses and site energies of a Moment Tensor Potential or an ETN for ASE
    (also available as :class:`PotentialCalculator`).

    Works with :mod:`ase.optimize`, :mod:`ase.md` and anything else that takes a calculator. Atoms are
    mapped to the potential's types by chemical symbol, never by order. The atoms are evaluated on
    ``n_threads`` OpenMP threads, and the neighbour list is kept across calls while the atoms move less than
    ``skin / 2`` (:class:`mtpfit.data.neighbors.VerletNeighbors`); neither changes the results beyond the order of
    floating-point sums (~1e-15 relative), and the thread count not at all.

    Parameters
    ----------
    potential : MTP or ETN or str or Path
        The potential, or the path of its file: an ``.mtp`` file or an ETN JSON file (``trained.etn.json``;
        :func:`mtpfit.potential.read_potential` tells them apart).
    species : sequence of str, optional
        Element symbol of each potential type 0 … S−1, e.g. ``["Nb", "Mo", "Ta", "W"]``. Needed when the
        potential's species are type indices (an ``.mtp`` file without ``potential_tag = elements:…``, as MLIP
        writes them) and it has more than one species; a one-species potential takes the element of each
        structure it is given. When the potential names its elements (files mtpfit writes, or an
        :class:`~mtpfit.MTP` or ETN labelled with symbols), ``species`` may be omitted and must agree if given.
    n_threads : int, optional
        OpenMP threads over the atoms; 0 (default) takes ``OMP_NUM_THREADS``, else every core.
    skin : float, optional
        Verlet skin of the neighbour list, Å (default :data:`DEFAULT_SKIN`); 0 builds a new list at every call.
    active_set : ActiveSet or str or Path, optional
        The potential's active set (:class:`mtpfit.active.ActiveSet`, or its file, e.g. ``trained.mtp.als.npz``
        as ``mtpfit grade`` writes it): every calculation then also gives ``extrapolation_grade``, the
        configuration's γ (Podryabinkin & Shapeev 2017; > 1: the potential extrapolates), and with a
        neighbourhood-mode set ``extrapolation_grades``, each atom's γ, shape (N,) (the configuration's is
        their largest). It costs one more forward pass over the atoms per call. MTP only (the grade is that of
        its linear coefficients).
    gamma_select, gamma_break : float, optional
        With ``active_set``: structures above ``gamma_select`` are kept (copies, in :attr:`extrapolating`) as
        candidates to label, as MLIP's ``threshold_save``; above ``gamma_break`` the calculation raises
        :class:`ExtrapolationError`, ending an MD run or relaxation there (MLIP's ``threshold_break``). Common
        values: 2 and 10.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Attributes
    ----------
    potential : MTP or ETN
        The potential, labelled with ``species`` when given (also as ``mtp``, the name of older code).
    neighbor_builds : int
        Neighbour lists built so far (read-only).
    extrapolating : list of ase.Atoms
        The structures calculated with γ above ``gamma_select``, with ``info["extrapolation_grade"]`` (and, in
        neighbourhood mode, the per-atom array ``arrays["extrapolation_grades"]``).

    Notes
    -----
    Results: ``energy`` and ``free_energy`` (eV), ``forces`` (N, 3) eV/Å, ``energies`` (site
    energies, eV) and, for cells periodic in all three directions, ``stress`` (Voigt xx yy zz yz
    xz xy, eV/Å³, ASE's sign: σ = −S/V with S the PlusStress virial) and ``stresses`` (N, 6), the per-atom
    stresses in ASE's convention (that of ``ase.calculators.lj`` and :meth:`ase.Atoms.get_stresses`): atom i's
    virial over the volume of the whole cell, σ_i = −W_i/V, so that they sum to ``stress``. W_i splits each
    pair's virial term −g_ij ⊗ r_ij (g_ij = ∂V_i/∂r_ij, V_i the site energy) half to each of the two atoms
    (:attr:`mtpfit.Prediction.atom_virials`).

    Raises
    ------
    ValueError
        On construction, if ``species`` contradicts the elements the potential names, or the potential has
        several species labelled by type index and no ``species`` is given; for a negative ``n_threads`` or
        ``skin``; for an ``active_set`` with an ETN. From :meth:`calculate`, for elements the potential lacks
        (naming them and the potential's species), overlapping atoms, or a geometry the neighbour list refuses (coordinates beyond 1e6 Å, a
        degenerate cell, a neighbour list past :data:`mtpfit.data.neighbors.MAX_PAIRS`).
    FloatingPointError
        From :meth:`calculate`, when the prediction is not finite.

    Warns as :meth:`mtpfit.MTP.evaluate` (:meth:`mtpfit.potential.ETN.evaluate`) does: atoms closer than
    ``min_dist``, absurd site energies.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies", "stresses",
                              "extrapolation_grade", "extrapolation_grades"]

    def __init__(self, potential: MTP | ETN | str, species: Sequence[str] | None = None, n_threads: int = 0,
                 skin: float = DEFAULT_SKIN, active_set=None, gamma_select: float | None = None,
                 gamma_break: float | None = None, **kwargs):
        super().__init__(**kwargs)
        mtp = potential if isinstance(potential, (MTP, ETN)) else read_potential(potential)
        self.potential = mtp if species is None else mtp.with_species(species)
        count = self.mtp.species_count
        if not self.mtp.named and count > 1:
            raise ValueError(f"{self.mtp.source or 'the potential'} labels its {count} species by type index "
                             f"{self.mtp.species}, not by element: pass species= with the element symbol of each "
                             f"type 0…{count - 1} (MLIP's .mtp files do not name them)")
        if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or n_threads < 0:
            raise ValueError(f"n_threads must be an integer >= 0 (0: all cores), got {n_threads!r}")
        self.n_threads = int(n_threads)
        self._neighbors = VerletNeighbors(self.mtp.max_dist, skin, count, self.mtp.min_dist, self.n_threads)
        # the last atoms' elements, the potential labelled for them and their types: kept while the elements are
        self._numbers = self._symbols = self._named = self._types = None
        if active_set is not None and not isinstance(self.mtp, MTP):
            raise ValueError("active_set: the extrapolation grade is defined for an MTP (its linear coefficients); "
                             f"{type(self.mtp).__name__} has none")
        if active_set is not None and not hasattr(active_set, "grades"):
            from .active import ActiveSet

            active_set = ActiveSet.load(active_set, self.mtp)
        if (gamma_select is not None or gamma_break is not None) and active_set is None:
            raise ValueError("gamma_select and gamma_break need the potential's active_set")
        for name, value in (("gamma_select", gamma_select), ("gamma_break", gamma_break)):
            if value is not None and not value >= 1.0:
                raise ValueError(f"{name} must be at least 1 (γ ≤ 1 inside the training set), got {value!r}")
        self.active_set, self.gamma_select, self.gamma_break = active_set, gamma_select, gamma_break
        self.extrapolating: list = []

    @property
    def mtp(self):
        """The potential (:attr:`potential`), by the name of the code written before the ETN."""
        return self.potential

    @property
    def neighbor_builds(self) -> int:
        """Neighbour lists built so far."""
        return self._neighbors.builds

    def check_state(self, atoms, tol=1e-15):
        """What changed since the last calculation, among the only things the results depend on: positions,
        numbers, cell and pbc, compared exactly (ASE's generic comparison of every array, momenta included, took
        more time per MD step at 2000 atoms than the neighbour-vector update)."""
        if self.atoms is None:
            return list(all_changes)
        old = self.atoms
        same = {"positions": np.array_equal(old.positions, atoms.positions),
                "numbers": np.array_equal(old.numbers, atoms.numbers),
                "cell": np.array_equal(old.cell.array, atoms.cell.array), "pbc": np.array_equal(old.pbc, atoms.pbc)}
        return [name for name, unchanged in same.items() if not unchanged]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        has_cell = bool(np.any(self.atoms.cell.array != 0.0))
        numbers = self.atoms.numbers
        if self._numbers is None or not np.array_equal(numbers, self._numbers):
            self._numbers, self._named = numbers.copy(), None
            self._symbols = np.array(self.atoms.get_chemical_symbols())
        config = Configuration(positions=self.atoms.positions, species=self._symbols,
                               cell=self.atoms.cell.array if has_cell else None,
                               pbc=self.atoms.pbc if has_cell else None,
                               source=f"ase.Atoms ({len(self.atoms)} atoms)")
        if self._named is None:
            try:
                named = self.mtp.named_for(np.unique(config.species).tolist())
            except ValueError as err:
                raise ValueError(f"{config.source}: {err}") from None
            self._named, self._types = named, named.types_of(config)
        mtp = self._named
        structure = self._neighbors.structure(config, self._types)
        # per-atom virials cost a pass over the pairs: only when asked for (MD asks for forces)
        prediction = mtp._predict(config, mtp.theta, self._types, structure, self.n_threads,
                                  "stresses" in properties)
        self.results = {"energy": prediction.energy, "free_energy": prediction.energy,
                        "forces": prediction.forces, "energies": prediction.site_energies}
        if config.volume:
            self.results["stress"] = (-prediction.plus_stress / config.volume)[_VOIGT]
            if prediction.atom_virials is not None:
                self.results["stresses"] = (-prediction.atom_virials / config.volume)[:, _VOIGT[0], _VOIGT[1]]
        elif "stress" in properties or "stresses" in properties:
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
        if self.active_set is not None:
            from . import _core

            self.active_set.check(mtp)
            # on the neighbour list just used: no second list, no training-set representation per call
            rows = _core.site_linear_rows(mtp.basis.core, mtp.theta, structure, self.n_threads)
            atom_gammas = None
            if self.active_set.mode == "neighbourhood":
                atom_gammas = self.active_set.grades(rows)
                self.results["extrapolation_grades"] = atom_gammas
                gamma = float(atom_gammas.max(initial=0.0))
            else:
                gamma = self.active_set.structure_grade(rows)
            self.results["extrapolation_grade"] = gamma
            if self.gamma_select is not None and gamma > self.gamma_select:
                kept = self.atoms.copy()
                kept.info["extrapolation_grade"] = gamma
                if atom_gammas is not None:
                    kept.arrays["extrapolation_grades"] = atom_gammas.copy()
                self.extrapolating.append(kept)
            if self.gamma_break is not None and gamma > self.gamma_break:
                raise ExtrapolationError(f"{config.source}: extrapolation grade {gamma:.4g} > gamma_break "
                                         f"{self.gamma_break:g}: the potential is far outside its training set",
                                         gamma, self.atoms.copy())
        elif "extrapolation_grade" in properties or "extrapolation_grades" in properties:
            raise PropertyNotImplementedError("extrapolation_grade needs the potential's active_set")
        if "extrapolation_grades" in properties and "extrapolation_grades" not in self.results:
            raise PropertyNotImplementedError("extrapolation_grades (per atom) needs a neighbourhood-mode active set "
                                              "(mtpfit grade --mode neighbourhood); this one grades configurations")


#: The calculator by a name that fits every model it takes (an MTP or an ETN): the same class as
#: :class:`MTPCalculator`.
PotentialCalculator = MTPCalculator
