"""The ASE calculator: same numbers as the core, ASE's stress sign, usable by ase.optimize and ase.md."""
import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from conftest import DATA
from mtpfit import MTP, MTPCalculator

POT = DATA / "mlip2" / "level08_multi" / "pot.mtp"
SPECIES = ["Au", "Ag", "Cu"]  # crystals_multi: three EMT metals; the labels only need to be distinct


def _atoms(seed=0):
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(seed)
    atoms.set_chemical_symbols(rng.choice(SPECIES, len(atoms)))
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_matches_core_and_numerical_stress():
    atoms = _atoms()
    atoms.calc = MTPCalculator(POT, species=SPECIES)
    e = atoms.get_potential_energy()
    assert atoms.get_potential_energy(force_consistent=True) == e
    assert np.sum(atoms.get_potential_energies()) == pytest.approx(e, rel=1e-12)
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    stress = atoms.get_stress()
    assert np.max(np.abs(stress - numerical)) < 1e-6 * np.max(np.abs(stress)) + 1e-9
    numerical_forces = calculate_numerical_forces(atoms, eps=1e-5)
    assert np.max(np.abs(atoms.get_forces() - numerical_forces)) < 1e-6 * np.max(np.abs(numerical_forces))


def test_relaxation_and_md_run():
    atoms = _atoms(1)
    atoms.calc = MTPCalculator(MTP.read(POT, species=SPECIES))
    e0 = atoms.get_potential_energy()
    BFGS(atoms, logfile=None).run(fmax=0.01, steps=200)
    assert np.max(np.linalg.norm(atoms.get_forces(), axis=1)) < 0.01
    assert atoms.get_potential_energy() < e0
    md = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    atoms.set_momenta(np.random.default_rng(0).normal(0, 0.05, (len(atoms), 3)))
    etot0 = atoms.get_potential_energy() + atoms.get_kinetic_energy()
    md.run(20)
    etot = atoms.get_potential_energy() + atoms.get_kinetic_energy()
    assert abs(etot - etot0) < 1e-3 * len(atoms)


def test_molecule_has_no_stress_and_unknown_element_is_named():
    atoms = _atoms()[:5]
    atoms.pbc = False
    atoms.cell = np.zeros((3, 3))
    atoms.calc = MTPCalculator(POT, species=SPECIES)
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    atoms[0].symbol = "Pt"
    with pytest.raises(ValueError, match="'Pt'"):
        atoms.get_potential_energy()
