"""The ETN tensor-network potential (mtpfit.potential.etn, cpp/etn.hpp): derivatives against central finite
differences, O(3) and permutation invariance, the TrainingSet passes, threads, files and refused input."""
import json

import numpy as np
import pytest

from mtpfit import _core
from mtpfit.data.configuration import Configuration
from mtpfit.data.neighbors import build_structure
from mtpfit.io import FormatError
from mtpfit.potential import ETN

SKEWED_CELL = np.array([[4.6, 0.0, 0.0], [1.1, 4.3, 0.0], [0.7, -0.6, 4.9]])

# L = 1, 2, 3; d = 2, 3, 4; ranks 1 … 4; 1 and 3 species; periodic skewed cells and molecules
CASES = [
    dict(species=[0], max_l=1, copies=2, ranks=[1], periodic=True),
    dict(species=["Mo", "Nb", "Ta"], max_l=2, copies=3, ranks=[2, 3], periodic=False),
    dict(species=[0, 1, 2], max_l=3, copies=4, ranks=[4, 2, 3], periodic=True),
    dict(species=["H"], max_l=3, copies=3, ranks=[4, 1], periodic=False),
]
IDS = ["S1-L1-d2-periodic", "S3-L2-d3-molecule", "S3-L3-d4-periodic", "S1-L3-d3-molecule"]


def random_config(rng, species, periodic, n=6, min_sep=1.5):
    """n atoms at least min_sep Å apart (images included): in SKEWED_CELL, or a molecule in a 4 Å box."""
    cell = SKEWED_CELL if periodic else None
    images = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ SKEWED_CELL
    positions = []
    while len(positions) < n:
        x = rng.uniform(size=3) @ SKEWED_CELL if periodic else rng.uniform(0.0, 4.0, 3)
        shifts = images if periodic else np.zeros((1, 3))
        if all(np.linalg.norm(x - p + s) >= min_sep for p in positions for s in shifts):
            positions.append(x)
    labels = [species[k] for k in rng.integers(0, len(species), n)]
    return Configuration(positions=np.array(positions), species=np.array(labels, dtype=object), cell=cell)


def make_etn(case, seed=0):
    etn = ETN(case["species"], radial_basis_size=4, max_l=case["max_l"], channels=2, copies=case["copies"],
              ranks=case["ranks"], min_dist=1.0, max_dist=4.0)
    theta = etn.init_params(seed=seed)
    theta[etn.blocks["species"]] = np.random.default_rng(seed).uniform(-1.0, 1.0, etn.species_count)
    return etn.copy(theta)


def moved(config, positions=None, cell=None):
    return Configuration(positions=config.positions if positions is None else positions, species=config.species,
                         cell=config.cell if cell is None else cell)


def energy(etn, config):
    return etn.evaluate(config).energy


def labelled_set(etn, configs, rng):
    """A TrainingSet with random labels and positive energy, force and stress weights."""
    ts = _core.TrainingSet()
    for c in configs:
        n = c.n_atoms
        ts.add(etn.structure(c), rng.normal(), rng.uniform(0.5, 1.0), rng.normal(size=(n, 3)),
               rng.uniform(0.1, 1.0, (n, 3)), rng.normal(size=(3, 3)), rng.uniform(0.1, 1.0, (3, 3)))
    return ts


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forces_and_stress_match_finite_differences(case):
    rng = np.random.default_rng(1)
    etn = make_etn(case)
    config = random_config(rng, case["species"], case["periodic"])
    p = etn.evaluate(config)
    h = 1e-5
    fd = np.zeros_like(p.forces)
    for i in range(config.n_atoms):
        for a in range(3):
            x = config.positions.copy()
            x[i, a] += h
            up = energy(etn, moved(config, x))
            x[i, a] -= 2 * h
            fd[i, a] = -(up - energy(etn, moved(config, x))) / (2 * h)
    assert np.abs(fd).max() > 1e-3  # a test of something
    assert np.abs(p.forces - fd).max() <= 1e-6 * np.abs(p.forces).max()
    # PlusStress S = −Σ g ⊗ r = −dE/dε for the deformation x ↦ (I + ε) x of positions and cell
    fd_stress = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            values = []
            for sign in (1.0, -1.0):
                D = np.eye(3)
                D[a, b] += sign * h
                values.append(energy(etn, moved(config, config.positions @ D.T,
                                                None if config.cell is None else config.cell @ D.T)))
            fd_stress[a, b] = -(values[0] - values[1]) / (2 * h)
    assert np.abs(p.plus_stress - fd_stress).max() <= 1e-6 * np.abs(p.plus_stress).max()
    assert np.allclose(p.forces.sum(axis=0), 0.0, atol=1e-12 * np.abs(p.forces).max())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loss_gradient_matches_finite_differences(case):
    rng = np.random.default_rng(2)
    etn = make_etn(case, seed=3)
    configs = [random_config(rng, case["species"], case["periodic"], n=n) for n in (4, 5)]
    ts = labelled_set(etn, configs, rng)
    loss, grad, per = ts.loss_and_gradient(etn.core, etn.theta, 1)
    assert per.sum() == pytest.approx(loss, rel=1e-14)
    h = 1e-6
    fd = np.empty(etn.n_params)
    for p in range(etn.n_params):
        up, down = etn.theta.copy(), etn.theta.copy()
        up[p] += h
        down[p] -= h
        fd[p] = (ts.loss_and_gradient(etn.core, up, 1)[0] - ts.loss_and_gradient(etn.core, down, 1)[0]) / (2 * h)
    for name, block in etn.blocks.items():
        assert np.abs(fd[block]).max() > 0.0, name  # every block is exercised
    assert np.abs(grad - fd).max() <= 1e-6 * np.abs(fd).max()


def random_orthogonal(rng, det):
    Q, R = np.linalg.qr(rng.normal(size=(3, 3)))
    Q = Q * np.sign(np.diag(R))
    return Q if np.linalg.det(Q) * det > 0 else Q @ np.diag([1.0, 1.0, -1.0])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_energy_invariant_under_rotation_reflection_translation_permutation(case):
    rng = np.random.default_rng(4)
    etn = make_etn(case, seed=5)
    config = random_config(rng, case["species"], case["periodic"], n=7)
    e0 = energy(etn, config)
    assert abs(e0) > 1e-3
    for det in (1.0, -1.0):
        Q = random_orthogonal(rng, det)
        cell = None if config.cell is None else config.cell @ Q.T
        assert energy(etn, moved(config, config.positions @ Q.T, cell)) == pytest.approx(e0, rel=1e-12, abs=0)
    shifted = moved(config, config.positions + rng.normal(size=3) * 3.0)
    assert energy(etn, shifted) == pytest.approx(e0, rel=1e-12, abs=0)
    order = rng.permutation(config.n_atoms)
    permuted = Configuration(positions=config.positions[order], species=config.species[order], cell=config.cell)
    assert energy(etn, permuted) == pytest.approx(e0, rel=1e-12, abs=0)
    # the forces rotate with the atoms
    Q = random_orthogonal(rng, -1.0)
    cell = None if config.cell is None else config.cell @ Q.T
    forces = etn.evaluate(moved(config, config.positions @ Q.T, cell)).forces
    assert np.allclose(forces, etn.evaluate(config).forces @ Q.T, rtol=0, atol=1e-11)


def test_harmonics_orthonormal_and_gaunt_coefficients_exact():
    model = _core.EtnModel(1, 4, 4, 2, 3, [2, 2], 0.0, 5.0)
    z, w = np.polynomial.legendre.leggauss(16)
    phi = 2 * np.pi * np.arange(24) / 24
    zz, pp = np.repeat(z, 24), np.tile(phi, 16)
    weights = np.repeat(w, 24) * 2 * np.pi / 24
    s = np.sqrt(1 - zz ** 2)
    Y = model.harmonics(np.stack([s * np.cos(pp), s * np.sin(pp), zz], axis=1))
    assert np.abs((Y * weights[:, None]).T @ Y - np.eye(25)).max() < 1e-13
    # Y_00 = 1/√(4π); Y_10 = √(3/4π) z; Y_11 = √(3/4π) x, Y_1,−1 = √(3/4π) y
    u = np.array([[0.36, -0.48, 0.8]])
    Yu = model.harmonics(u)[0]
    assert np.allclose(Yu[:4], np.array([0.5 / np.sqrt(np.pi), *(np.sqrt(3 / (4 * np.pi)) * u[0, [1, 2, 0]])]),
                       rtol=1e-14)
    for p, (l1, l2, l3) in enumerate(model.paths):
        assert abs(l1 - l2) <= l3 <= l1 + l2 and (l1 + l2 + l3) % 2 == 0
        exact = np.einsum("q,qa,qb,qc->abc", weights, Y[:, l1 * l1:(l1 + 1) ** 2], Y[:, l2 * l2:(l2 + 1) ** 2],
                          Y[:, l3 * l3:(l3 + 1) ** 2])
        table = np.zeros_like(exact)
        for m1, m2, m3, value in model.gaunt(p):
            table[int(m1), int(m2), int(m3)] = value
        assert np.abs(table - exact).max() < 1e-13
    every = [(a, b, c) for a in range(5) for b in range(5) for c in range(5)
             if abs(a - b) <= c <= a + b and (a + b + c) % 2 == 0]
    assert model.paths == every  # lexicographic, θ order


def test_parameter_counts_and_blocks():
    etn = ETN(["A", "B"], radial_basis_size=8, max_l=3, channels=6, copies=3, ranks=[3, 3], min_dist=1.0,
              max_dist=5.0)
    # radial 2²·4·6·8 = 768, species 2, A 25·3, G_2 Σ_paths 3·n_l2·3 over 23 paths (4 with l2 = 0), B 3·25
    assert etn.n_params == 768 + 2 + 75 + 9 * (4 * 7 + 19 * 6) + 75 == 2198
    assert ETN([0, 1], radial_basis_size=8, max_l=4, channels=8, copies=3, ranks=[4, 4], min_dist=1.0,
               max_dist=5.0).n_params == 7066
    b = etn.blocks
    assert (b["radial"].stop, b["species"].stop, b["core_1"].stop, b["core_2"].stop) == (768, 770, 845, 2123)
    assert b["cores"] == slice(770, 2198) and b["core_3"] == slice(2123, 2198)
    assert etn.penalty() == (0.0, pytest.approx(np.zeros(etn.n_params)))


def test_neighbours_beyond_the_cutoff_contribute_nothing():
    case = CASES[2]
    etn = make_etn(case, seed=6)
    config = random_config(np.random.default_rng(7), case["species"], True)
    p = etn.evaluate(config)
    wide = build_structure(config, etn.types_of(config), etn.max_dist + 1.5, etn.species_count)
    q = etn.evaluate(config, structure=wide)
    assert wide.n_pairs > etn.structure(config).n_pairs
    assert np.allclose(q.site_energies, p.site_energies, rtol=1e-14, atol=0)
    assert np.allclose(q.forces, p.forces, rtol=0, atol=1e-13 * np.abs(p.forces).max())


def test_training_set_passes_agree_with_loss_and_gradient():
    case = CASES[1]
    rng = np.random.default_rng(8)
    etn = make_etn(case, seed=9)
    configs = [random_config(rng, case["species"], bool(k % 2), n=n) for k, n in enumerate((3, 5, 4))]
    ts = labelled_set(etn, configs, rng)
    loss, grad, _ = ts.loss_and_gradient(etn.core, etn.theta, 1)
    energies, forces, stresses = ts.predict(etn.core, etn.theta, 1)
    at = 0
    for k, c in enumerate(configs):
        p = etn.evaluate(c)
        assert energies[k] == pytest.approx(p.energy, rel=1e-14)
        assert np.allclose(forces[at:at + c.n_atoms], p.forces, rtol=0, atol=1e-14 * np.abs(p.forces).max())
        assert np.allclose(stresses[k], p.plus_stress, rtol=1e-13, atol=1e-13)
        at += c.n_atoms
    r, w = ts.residuals(etn.core, etn.theta, 1)
    assert np.sum(w * r * r) == pytest.approx(loss, rel=1e-13)
    assert np.allclose(ts.residual_vjp(etn.core, etn.theta, 2 * w * r, 1), grad, rtol=1e-12,
                       atol=1e-12 * np.abs(grad).max())
    jacobians = [ts.residual_jacobian(etn.core, etn.theta, k)[2] for k in range(len(configs))]
    J = np.vstack(jacobians)
    assert np.allclose(J.T @ (2 * w * r), grad, rtol=1e-12, atol=1e-12 * np.abs(grad).max())
    gn_loss, JtWJ, JtWr = ts.gauss_newton(etn.core, etn.theta, 1)
    assert gn_loss == pytest.approx(loss, rel=1e-13)
    assert np.allclose(JtWr, grad / 2, rtol=1e-12, atol=1e-12 * np.abs(grad).max())
    assert np.allclose(JtWJ, J.T @ (w[:, None] * J), rtol=1e-11, atol=1e-11 * np.abs(JtWJ).max())
    dE = ts.energy_gradients(etn.core, etn.theta, 1)
    assert np.allclose(dE, [Jk[0] for Jk in jacobians], rtol=1e-12, atol=1e-12 * np.abs(dE).max())
    assert np.allclose(dE[0], etn.energy_gradient(configs[0]), rtol=1e-12, atol=1e-12 * np.abs(dE).max())
    # a mini-batch is the sum of its configurations' terms
    sub, sub_grad, _ = ts.loss_and_gradient(etn.core, etn.theta, 1, np.array([2, 0], dtype=np.int32))
    assert sub == pytest.approx(sum(ts.loss_and_gradient(etn.core, etn.theta, 1, np.array([k], dtype=np.int32))[0]
                                    for k in (0, 2)), rel=1e-13)


def test_one_and_two_threads_are_bit_identical():
    case = CASES[2]
    rng = np.random.default_rng(10)
    etn = make_etn(case, seed=11)
    configs = [random_config(rng, case["species"], True, n=n) for n in (4, 6, 5, 3)]
    ts = labelled_set(etn, configs, rng)
    one, two = (ts.loss_and_gradient(etn.core, etn.theta, t) for t in (1, 2))
    assert one[0] == two[0] and np.array_equal(one[1], two[1]) and np.array_equal(one[2], two[2])
    for a, b in zip(ts.predict(etn.core, etn.theta, 1), ts.predict(etn.core, etn.theta, 2)):
        assert np.array_equal(a, b)
    for a, b in zip(ts.gauss_newton(etn.core, etn.theta, 1), ts.gauss_newton(etn.core, etn.theta, 2)):
        assert np.array_equal(a, b)
    p1, p2 = (etn.evaluate(configs[1], n_threads=t, virials=True) for t in (1, 2))
    for a, b in zip(p1, p2):
        assert np.array_equal(a, b)
    assert np.allclose(p1.atom_virials.sum(axis=0), p1.plus_stress, rtol=1e-13, atol=1e-13)


def test_json_round_trip(tmp_path):
    case = CASES[1]
    etn = make_etn(case, seed=12)
    config = random_config(np.random.default_rng(13), case["species"], False)
    path = tmp_path / "potential.etn.json"
    etn.write(path)
    back = ETN.read(path)
    assert back.species == etn.species and back.hyperparameters == etn.hyperparameters
    assert np.array_equal(back.theta, etn.theta)
    a, b = etn.evaluate(config), back.evaluate(config)
    assert a.energy == b.energy and np.array_equal(a.forces, b.forces)


def corrupt(document, change):
    document = json.loads(json.dumps(document))
    change(document)
    return document


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(model="MTP"), "not an ETN potential file"),
    (lambda d: d.update(version=2), "version 2 is not supported"),
    (lambda d: d.pop("theta"), "missing entries ['theta']"),
    (lambda d: d.update(extra=1), "unknown entries ['extra']"),
    (lambda d: d["hyperparameters"].pop("ranks"), "missing ['ranks']"),
    (lambda d: d["hyperparameters"].update(max_l=2.5), "max_l must be an integer"),
    (lambda d: d["hyperparameters"].update(ranks=[2]), "ranks must hold copies − 1 = 2 values"),
    (lambda d: d["hyperparameters"].update(max_dist=0.5), "need 0 <= min_dist < max_dist"),
    (lambda d: d.update(theta=d["theta"][:-1]), "its theta holds"),
    (lambda d: d.update(n_params=3), "the file's n_params is 3"),
    (lambda d: d["theta"].__setitem__(0, "x"), "theta must be a list of numbers"),
    (lambda d: d.update(species=["Mo", "Mo", "Ta"]), "distinct labels"),
])
def test_malformed_files_are_refused_naming_the_file(tmp_path, change, message):
    etn = make_etn(CASES[1])
    good = tmp_path / "good.json"
    etn.write(good)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(corrupt(json.loads(good.read_text()), change)))
    with pytest.raises(FormatError) as err:
        ETN.read(bad)
    assert str(err.value).startswith(str(bad)) and message in str(err.value)


def test_non_json_and_nan_refused(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("{not json")
    with pytest.raises(FormatError, match="not a JSON file"):
        ETN.read(path)
    etn = make_etn(CASES[0])
    etn.write(path)
    path.write_text(path.read_text().replace(repr(float(etn.theta[0])), "NaN", 1))
    with pytest.raises(FormatError, match="NaN or infinity"):
        ETN.read(path)


@pytest.mark.parametrize("shape, message", [
    (dict(copies=1, ranks=[]), "copies (d) must be >= 2"),
    (dict(copies=3, ranks=[2]), "ranks must hold copies − 1 = 2 values, got 1"),
    (dict(ranks=[0, 2]), "rank r_1 must be >= 1"),
    (dict(max_l=11), "max_l must be in 0…10"),
    (dict(channels=0), "channels must be >= 1"),
    (dict(radial_basis_size=0), "radial_basis_size must be >= 1"),
    (dict(min_dist=3.0, max_dist=2.0), "need 0 <= min_dist < max_dist"),
    (dict(max_dist=float("inf")), "need 0 <= min_dist < max_dist"),
    (dict(channels=2.0), "channels must be an integer"),
])
def test_bad_shapes_refused(shape, message):
    arguments = dict(radial_basis_size=4, max_l=2, channels=2, copies=3, ranks=[2, 2], min_dist=1.0, max_dist=4.0)
    arguments.update(shape)
    with pytest.raises(ValueError) as err:
        ETN([0], **arguments)
    assert message in str(err.value)


def test_theta_and_config_refused():
    etn = make_etn(CASES[0])
    with pytest.raises(ValueError, match="theta has 3 values"):
        _core.TrainingSet().loss_and_gradient(etn.core, np.zeros(3), 1)
    with pytest.raises(ValueError, match="expected"):
        etn.copy(np.zeros(3))
    with pytest.raises(ValueError, match="species 'Xe' is not one of the potential's species"):
        etn.evaluate(Configuration(positions=np.zeros((1, 3)), species=np.array(["Xe"])))
