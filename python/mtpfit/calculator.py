"""ASE calculator: a thin adapter from :class:`ase.Atoms` to the MTP core."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .data.configuration import Configuration
from .potential.mtp import MTP

__all__ = ["MTPCalculator"]


class MTPCalculator(Calculator):
    """Energies, forces, stresses and site energies of a Moment Tensor Potential for ASE.

    Works with :mod:`ase.optimize`, :mod:`ase.md` and anything else that takes a calculator. Atoms are
    mapped to the potential's types by chemical symbol, never by order.

    Parameters
    ----------
    potential : MTP or str or Path
        The potential, or the path of an ``.mtp`` file.
    species : sequence of str, optional
        Element symbol of each potential type 0 … S−1, e.g. ``["Nb", "Mo", "Ta", "W"]``. Needed when the
        potential's species are type indices (an ``.mtp`` file without ``potential_tag = elements:…``, as MLIP
        writes them) and it has more than one species; a one-species potential takes the element of each
        structure it is given. When the potential names its elements (files mtpfit writes, or an
        :class:`~mtpfit.MTP` labelled with symbols), ``species`` may be omitted and must agree if given.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Notes
    -----
    Results: ``energy`` and ``free_energy`` (eV), ``forces`` (N, 3) eV/Å, ``energies`` (site
    energies, eV) and, for cells periodic in all three directions, ``stress`` (Voigt xx yy zz yz
    xz xy, eV/Å³, ASE's sign: σ = −S/V with S the PlusStress virial).

    Raises
    ------
    ValueError
        On construction, if ``species`` contradicts the elements the potential names, or the potential has
        several species labelled by type index and no ``species`` is given. From :meth:`calculate`, for
        elements the potential lacks (naming them and the potential's species), overlapping atoms, or a geometry
        the neighbour list refuses (coordinates beyond 1e6 Å, a degenerate cell, a neighbour list past
        :data:`mtpfit.data.neighbors.MAX_PAIRS`).
    FloatingPointError
        From :meth:`calculate`, when the prediction is not finite.

    Warns as :meth:`mtpfit.MTP.evaluate` does: atoms closer than ``min_dist``, absurd site energies.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, potential: MTP | str, species: Sequence[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        mtp = potential if isinstance(potential, MTP) else MTP.read(potential)
        self.mtp = mtp if species is None else mtp.with_species(species)
        count = self.mtp.basis.species_count
        if not self.mtp.named and count > 1:
            raise ValueError(f"{self.mtp.source or 'the potential'} labels its {count} species by type index "
                             f"{self.mtp.species}, not by element: pass species= with the element symbol of each "
                             f"type 0…{count - 1} (MLIP's .mtp files do not name them)")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        has_cell = bool(np.any(self.atoms.cell.array != 0.0))
        config = Configuration(positions=self.atoms.positions, species=np.array(self.atoms.get_chemical_symbols()),
                               cell=self.atoms.cell.array if has_cell else None,
                               pbc=self.atoms.pbc if has_cell else None,
                               source=f"ase.Atoms ({len(self.atoms)} atoms)")
        try:
            mtp = self.mtp.named_for(np.unique(config.species).tolist())
        except ValueError as err:
            raise ValueError(f"{config.source}: {err}") from None
        prediction = mtp.evaluate(config)
        self.results = {"energy": prediction.energy, "free_energy": prediction.energy,
                        "forces": prediction.forces, "energies": prediction.site_energies}
        if config.volume:
            sigma = -prediction.plus_stress / config.volume
            self.results["stress"] = sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        elif "stress" in properties:
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
