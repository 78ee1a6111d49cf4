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


def _big(seed=0):
    """108 atoms of three species: 27 batches of the kernel's 4 lanes, so two threads share the work."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((3, 3, 3))
    rng = np.random.default_rng(seed)
    atoms.set_chemical_symbols(rng.choice(SPECIES, len(atoms)))
    atoms.rattle(0.05, seed=seed)
    return atoms


def _results(atoms, **options):
    atoms = atoms.copy()
    atoms.calc = MTPCalculator(POT, species=SPECIES, **options)
    return {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress(),
            "energies": atoms.get_potential_energies(), "stresses": atoms.get_stresses()}


def test_one_and_two_threads_agree_bit_for_bit():
    atoms = _big()
    one, two = _results(atoms, n_threads=1), _results(atoms, n_threads=2)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    mtp = MTP.read(POT, species=SPECIES)
    config = _config(atoms)
    a, b = mtp.evaluate(config, n_threads=1, virials=True), mtp.evaluate(config, n_threads=2, virials=True)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="n_threads"):
        MTPCalculator(POT, species=SPECIES, n_threads=-1)


def _config(atoms):
    from mtpfit import Configuration
    return Configuration(atoms.positions, atoms.get_chemical_symbols(), atoms.cell.array, atoms.pbc)


def _assert_close(a, b, rtol=1e-12):
    for name in a:
        scale = max(float(np.max(np.abs(b[name]))), 1.0)
        assert np.max(np.abs(np.asarray(a[name]) - b[name])) <= rtol * scale, name


def test_kept_neighbour_list_equals_a_fresh_one_after_small_moves():
    atoms = _big(1)
    atoms.calc = calc = MTPCalculator(POT, species=SPECIES, skin=0.6)
    rng = np.random.default_rng(2)
    for _ in range(4):
        # each atom drifts by < 0.07 Å per step: < 0.3 Å = skin/2 in all, and pairs cross the cutoff
        atoms.positions += rng.uniform(-0.04, 0.04, atoms.positions.shape)
        kept = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                "stress": atoms.get_stress(), "stresses": atoms.get_stresses()}
        fresh = _results(atoms, skin=0.0)
        _assert_close(kept, {name: fresh[name] for name in kept})
    assert calc.neighbor_builds == 1


def test_pair_entering_the_cutoff_within_the_skin_is_counted():
    # a dimer just beyond the cutoff: inside the skin, it interacts once moved in, without a new list
    from ase import Atoms
    mtp = MTP.read(POT, species=SPECIES)
    dimer = Atoms("CuAg", positions=[[0, 0, 0], [mtp.basis.max_dist + 0.1, 0, 0]])
    dimer.calc = calc = MTPCalculator(mtp, skin=0.5)
    apart = dimer.get_potential_energy()
    assert np.all(dimer.get_forces() == 0.0)
    dimer.positions[1, 0] -= 0.2
    near = dimer.get_potential_energy()
    assert calc.neighbor_builds == 1
    assert near != apart
    fresh = dimer.copy()
    fresh.calc = MTPCalculator(mtp, skin=0.0)
    assert near == pytest.approx(fresh.get_potential_energy(), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(dimer.get_forces(), fresh.get_forces(), rtol=1e-12, atol=1e-12)


def test_list_is_rebuilt_past_half_the_skin_or_on_a_new_cell_or_species():
    atoms = _atoms()
    atoms.calc = calc = MTPCalculator(POT, species=SPECIES, skin=0.5)
    atoms.get_potential_energy()
    atoms.positions[3] += [0.24, 0.0, 0.0]
    atoms.get_potential_energy()
    assert calc.neighbor_builds == 1
    atoms.positions[3] += [0.02, 0.0, 0.0]      # 0.26 Å from where the list was built
    atoms.get_potential_energy()
    assert calc.neighbor_builds == 2
    atoms.positions[3] -= [0.02, 0.0, 0.0]      # measured from the new build: 0.02 Å
    atoms.get_potential_energy()
    assert calc.neighbor_builds == 2
    atoms.set_cell(atoms.cell.array * 1.001, scale_atoms=True)
    atoms.get_potential_energy()
    assert calc.neighbor_builds == 3
    atoms[0].symbol = "Ag" if atoms[0].symbol != "Ag" else "Au"
    e = atoms.get_potential_energy()
    assert calc.neighbor_builds == 4
    assert e == pytest.approx(_results(atoms, skin=0.0)["energy"], rel=1e-12)


def test_per_atom_stresses_split_each_pair_half_and_sum_to_the_stress():
    atoms = _big(3)
    atoms.calc = MTPCalculator(POT, species=SPECIES)
    stresses = atoms.get_stresses()
    assert stresses.shape == (len(atoms), 6)
    np.testing.assert_allclose(stresses.sum(axis=0), atoms.get_stress(), rtol=0, atol=1e-12)
    # against the definition, from finite differences of the site energies V_k in a cell wider than twice the
    # cutoff (one image per pair): g_kj = ∂V_k/∂x_j, W_i = −½ Σ_j g_ij ⊗ r_ij − ½ Σ_k g_ki ⊗ r_ki, σ_i = −W_i/V
    mtp = MTP.read(POT, species=SPECIES)
    rng = np.random.default_rng(4)
    side = 2 * mtp.basis.max_dist + 0.5
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)[:14]
    positions = (grid + 0.5) * side / 3 + rng.uniform(-0.4, 0.4, (14, 3))
    from ase import Atoms
    sparse = Atoms(rng.choice(SPECIES, 14), positions=positions, cell=np.eye(3) * side, pbc=True)
    sparse.calc = MTPCalculator(mtp)
    expected = np.zeros((14, 3, 3))
    h = 1e-5
    for j in range(14):
        for a in range(3):
            moved = []
            for sign in (1, -1):
                probe = sparse.copy()
                probe.positions[j, a] += sign * h
                probe.calc = MTPCalculator(mtp, skin=0.0)
                moved.append(probe.get_potential_energies())
            dV = (moved[0] - moved[1]) / (2 * h)       # ∂V_k/∂x_ja for every k
            for k in range(14):
                if k == j:
                    continue
                r = sparse.positions[j] - sparse.positions[k]
                r -= side * np.round(r / side)           # r_kj, the one image within reach
                expected[k, a] -= 0.5 * dV[k] * r        # the pair (k, j) on k's side …
                expected[j, a] -= 0.5 * dV[k] * r        # … and on j's
    sigma = -expected / sparse.get_volume()
    want = sigma[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    got = sparse.get_stresses()
    assert np.max(np.abs(got - want)) < 1e-6 * np.max(np.abs(want))


def test_md_with_the_skin_follows_md_without_it():
    runs = []
    for skin in (0.3, 0.0):      # atoms move up to ~0.2 Å: past skin/2, so the run keeps and rebuilds lists
        atoms = _big(5)
        atoms.set_momenta(np.random.default_rng(6).normal(0, 0.3, (len(atoms), 3)))
        atoms.calc = MTPCalculator(POT, species=SPECIES, skin=skin)
        VelocityVerlet(atoms, timestep=2.0 * units.fs).run(20)
        runs.append((atoms.positions.copy(), atoms.get_forces(), atoms.get_potential_energy(),
                     atoms.calc.neighbor_builds))
    (x, f, e, builds), (x0, f0, e0, builds0) = runs
    assert 1 < builds < builds0 == 21
    np.testing.assert_allclose(x, x0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(f, f0, rtol=0, atol=1e-10 * np.max(np.abs(f0)))
    assert e == pytest.approx(e0, rel=1e-12)


def test_verlet_list_compacts_to_the_pairs_inside_the_cutoff():
    """What the kernels get from a list with a skin: exactly the pairs a list at the cutoff holds (same order per
    atom), and a reused output structure whose old pairs and incoming index are gone."""
    from mtpfit import _core
    from mtpfit.data.configuration import Configuration
    from mtpfit.data.neighbors import build_structure

    mtp = MTP.read(POT, species=SPECIES)
    atoms = _big(1)
    config = Configuration(atoms.positions, atoms.get_chemical_symbols(), atoms.cell.array, atoms.pbc)
    types, b = mtp.types_of(config), mtp.basis
    wide = build_structure(config, types, b.max_dist, b.species_count, b.min_dist, skin=0.8)
    exact = build_structure(config, types, b.max_dist, b.species_count, b.min_dist)
    out = _core.Structure(np.zeros(0, np.int32), np.zeros(1, np.int32), np.zeros(0, np.int32), np.zeros(0), 1, None)
    expected = _core.evaluate(b.core, mtp.theta, exact, 1, False)
    for cutoff in (b.max_dist + 0.5, b.max_dist):  # the second call reuses (and shrinks) out, indexed by the first
        wide.within(cutoff, out)
        assert out.n_atoms == wide.n_atoms and out.n_pairs < wide.n_pairs
        for a, c in zip(_core.evaluate(b.core, mtp.theta, out, 1, False), expected):
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)
    assert out.n_pairs == exact.n_pairs
