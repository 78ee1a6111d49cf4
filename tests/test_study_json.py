"""The optimizer study's JSON weights and ``Loss(kind="file")``.

The study JSON stores 1 + 6 + 3N per-residual weights per configuration laid out [energy, stress (6, in the order
of the stress values), forces (3N, atom by atom, x y z)] (../shared/README.md). The stress values are the
PlusStress in eV in MLIP's order xx yy zz yz xz xy by default (what a fit of the Ag–Pd set shows,
``test_agpd_stress_is_plus_stress_in_mlip_order``), VASP's kBar in VASP's order on request. ``Loss(kind="file")`` uses them as
they are (multipliers 1 unless given), the 1/K average and the penalty as ``average``/``penalty`` say. The core
sums the stress term over the nine entries of the 3×3 residual, so an off-diagonal Voigt weight is put half on
(a, b) and half on (b, a): the nine-entry sum is then Σ_v w_v Δs_v² over the six Voigt components.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mtpfit
from conftest import shared_path
from mtpfit.io import read_study_json
from mtpfit.io.cfg import read_cfg
from mtpfit.objective.training_set import residual_weights

KBAR = 1602.1766208
MLIP2 = Path(__file__).parent / "data" / "mlip2" / "level08_multi"
# the two stress orders as 3×3 entries
VASP = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))
MLIP = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
# how to read stresses written in VASP's kBar and order
AS_VASP = {"stress_units": "kBar", "stress_order": "xx yy zz xy yz xz"}


def _entry(cell, positions, types, energy, forces, stress_kbar, weights) -> dict:
    return {"sim": {"cfg": {"cell": np.asarray(cell).tolist(), "pos": np.asarray(positions).tolist(),
                            "types": [int(t) for t in types]},
                    "energy": float(energy), "forces": np.asarray(forces).tolist(),
                    "stress": [float(v) for v in stress_kbar]},
            "weights": [float(w) for w in weights]}


def _stored_residual_weights(weights: list[float], n: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(energy, 6 stress in the file's order, (N, 3) forces) read from the raw list by the documented layout."""
    w = np.asarray(weights)
    return w[0], w[1:7], w[7:7 + 3 * n].reshape(n, 3)


# ----------------------------------------------------------------------------- the layout, residual by residual

@pytest.mark.parametrize("convention", ["default", "vasp"])
def test_each_stored_weight_lands_on_its_residual(tmp_path, convention):
    """Distinct weights at every position: each must reach the loss on its own residual (energy, each stress
    component, each atom's x y z force); the old reading [energy, forces, stress] fails here. Default: the values
    are PlusStress in eV, MLIP order; "vasp": kBar in VASP order."""
    n = 3
    cell = [[5.0, 0.0, 0.0], [0.5, 6.0, 0.0], [0.2, 0.3, 7.0]]
    positions = [[0.0, 0.0, 0.0], [1.5, 2.0, 2.5], [3.0, 4.0, 1.0]]
    # stress values distinct per component, to check that weight j pairs with stress value j
    stored = [11.0, 22.0, 33.0, 44.0, 55.0, 66.0]
    weights = [0.7,                                       # energy
               0.011, 0.012, 0.013, 0.014, 0.015, 0.016,  # stress, in the order of the values
               1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # atom 0 x y z, atom 1 x y z, atom 2 x y z
    assert len(weights) == 1 + 6 + 3 * n
    path = tmp_path / "distinct.json"
    path.write_text(json.dumps([_entry(cell, positions, [0, 1, 0], -3.0, np.zeros((n, 3)), stored, weights)]))
    volume = abs(np.linalg.det(np.array(cell)))
    order, options, to_ev = ((MLIP, {}, 1.0) if convention == "default" else (VASP, AS_VASP, volume / KBAR))
    (config,) = read_study_json(path, **options)

    # what the Configuration carries: Voigt order xx yy zz yz xz xy
    assert config.weights["energy"] == 0.7
    voigt = [order.index(c) for c in MLIP]
    np.testing.assert_array_equal(config.weights["stress"], np.array(weights[1:7])[voigt])
    np.testing.assert_array_equal(config.weights["forces"], [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    for j, (a, b) in enumerate(order):
        assert config.plus_stress[a, b] == config.plus_stress[b, a] == pytest.approx(stored[j] * to_ev, rel=1e-15)

    # what the core receives (no average, a one-configuration set either way)
    for loss in (mtpfit.Loss(kind="file", average=False), mtpfit.Loss(kind="file")):
        (w,) = residual_weights(mtpfit.Dataset([config]), loss)
        assert w.energy == 0.7
        np.testing.assert_array_equal(w.forces, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
        np.testing.assert_array_equal(w.stress, w.stress.T)
        # each Voigt weight counts once in the nine-entry sum: both symmetric entries add up to it
        for j, (a, b) in enumerate(order):
            assert w.stress[a, b] + (w.stress[b, a] if a != b else 0.0) == pytest.approx(weights[1 + j], rel=1e-15)

    # and weight j multiplies the square of stress value j: with zero predictions, the stress term of the loss
    # Σ_ab c_ab S_ab² is Σ_j w_j (s_j in eV)² in the file's own order
    nine_entry_sum = float(np.sum(w.stress * config.plus_stress ** 2))
    voigt_sum = sum(weights[1 + j] * (stored[j] * to_ev) ** 2 for j in range(6))
    assert nine_entry_sum == pytest.approx(voigt_sum, rel=1e-14)


def test_explicit_multipliers_scale_the_stored_weights(tmp_path):
    n = 1
    path = tmp_path / "one.json"
    path.write_text(json.dumps([_entry(np.eye(3) * 4, [[0, 0, 0]], [0], -1.0, [[0.1, 0.2, 0.3]],
                                       [1, 2, 3, 4, 5, 6], [0.5, 1, 1, 1, 2, 2, 2, 0.3, 0.4, 0.5])]))
    (config,) = read_study_json(path)
    (w,) = residual_weights(mtpfit.Dataset([config]),
                            mtpfit.Loss(kind="file", energy=2.0, forces=10.0, stress=3.0, average=False))
    assert w.energy == 1.0
    np.testing.assert_allclose(w.forces, [[3.0, 4.0, 5.0]], rtol=1e-15)
    np.testing.assert_allclose(np.diag(w.stress), [3.0] * 3, rtol=1e-15)
    np.testing.assert_allclose(w.stress[0, 1], 3.0, rtol=1e-15)  # 2 split in halves, times 3
    assert config.n_atoms == n


def test_loss_multiplier_defaults():
    """None means 1/0.01/0.001 for "mlip" and "plain" (unchanged) and 1/1/1 for "file"; explicit values win."""
    for loss in (mtpfit.Loss(), mtpfit.Loss(kind="mlip"), mtpfit.Loss(kind="plain")):
        assert (loss.energy, loss.forces, loss.stress) == (1.0, 0.01, 0.001)
    assert mtpfit.Loss() == mtpfit.Loss(kind="mlip", energy=1.0, forces=0.01, stress=0.001)
    file = mtpfit.Loss(kind="file")
    assert (file.energy, file.forces, file.stress) == (1.0, 1.0, 1.0)
    assert file.average and file.penalty  # the 1/K average and the penalty stay on by default, as for "mlip"
    explicit = mtpfit.Loss(kind="file", forces=0.01)
    assert (explicit.energy, explicit.forces, explicit.stress) == (1.0, 0.01, 1.0)
    with pytest.raises(ValueError, match="forces"):
        mtpfit.Loss(kind="file", forces=-1.0)


# ----------------------------------------------------------------------------- the real records (../shared)

def _first_record(relative: tuple[str, ...], tmp_path) -> tuple[dict, mtpfit.Configuration]:
    """The raw first record of a study file and its Configuration (read through a one-record copy in
    ``tmp_path``, deleted with it; nothing of the unlicensed data is kept in the repository)."""
    path = shared_path(*relative)
    record = json.loads(path.read_text())[0]
    one = tmp_path / "first_record.json"
    one.write_text(json.dumps([record]))
    (config,) = read_study_json(one)
    return record, config


def test_agpd_record_weights(tmp_path):
    """AgPd (N = 32): w_E = 1/N, stress 0.001/N (diagonal) and 2·0.001/N (off-diagonal), forces 0.01 — as the
    loss sees them: 0.001/N on all nine 3×3 entries, so the off-diagonal pair adds up to 2·0.001/N, i.e. exactly
    MLIP-2's default weights without the 1/K."""
    record, config = _first_record(("data", "AgPd", "train.json"), tmp_path)
    n = config.n_atoms
    assert n == 32 and len(record["weights"]) == 1 + 6 + 3 * n
    w_e, w_s, w_f = _stored_residual_weights(record["weights"], n)
    assert w_e == pytest.approx(1 / n, rel=1e-15)
    np.testing.assert_allclose(w_s, [0.001 / n] * 3 + [2 * 0.001 / n] * 3, rtol=1e-15)
    assert np.all(w_f == 0.01)

    (w,) = residual_weights(mtpfit.Dataset([config]), mtpfit.Loss(kind="file", average=False))
    assert w.energy == pytest.approx(1 / n, rel=1e-15)
    np.testing.assert_allclose(np.diag(w.stress), 0.001 / n, rtol=1e-15)
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert w.stress[a, b] == pytest.approx(0.001 / n, rel=1e-15)
        assert w.stress[a, b] + w.stress[b, a] == pytest.approx(2 * 0.001 / n, rel=1e-15)
    assert w.forces.shape == (n, 3) and np.all(w.forces == 0.01)  # atoms 0 and 1 included
    # the same residual weights as the default MLIP-2 loss
    (mlip,) = residual_weights(mtpfit.Dataset([config]), mtpfit.Loss(average=False))
    assert mlip.energy == pytest.approx(w.energy, rel=1e-15)
    np.testing.assert_allclose(mlip.stress, w.stress, rtol=1e-15)
    np.testing.assert_array_equal(mlip.forces, w.forces)


@pytest.mark.parametrize("relative", [("data", "MoNbTaVW", "validation.json"),
                                      ("data", "MoNbTaW", "seed_validation.json")])
def test_zero_stress_weight_records(tmp_path, relative):
    record, config = _first_record(relative, tmp_path)
    n = config.n_atoms
    w_e, w_s, w_f = _stored_residual_weights(record["weights"], n)
    assert w_e == pytest.approx(1 / n, rel=1e-15) and np.all(w_s == 0) and np.all(w_f == 0.01)
    (w,) = residual_weights(mtpfit.Dataset([config]), mtpfit.Loss(kind="file", average=False))
    assert np.all(w.stress == 0) and np.all(w.forces == 0.01)


# ----------------------------------------------------------------------------- the loss value

@pytest.fixture(scope="module")
def trained() -> mtpfit.MTP:
    return mtpfit.MTP.read(MLIP2 / "pot.mtp")


@pytest.fixture
def study_set(tmp_path) -> tuple[list[dict], list[mtpfit.Configuration]]:
    """Four labelled 3-species frames written as study JSON with seeded distinct weights, and read back."""
    rng = np.random.default_rng(11)
    records = []
    for frame in read_cfg(MLIP2 / "ref10.cfg")[:4]:
        n = frame.n_atoms
        stress_kbar = [frame.plus_stress[a, b] * KBAR / frame.volume for a, b in VASP]
        weights = rng.uniform(0.1, 2.0, 1 + 6 + 3 * n)
        records.append(_entry(frame.cell, frame.positions, frame.species, frame.energy, frame.forces,
                              stress_kbar, weights))
    path = tmp_path / "set.json"
    path.write_text(json.dumps(records))
    return records, read_study_json(path, **AS_VASP)


def _sum_w_r2(records: list[dict], configs: list[mtpfit.Configuration], prediction) -> list[float]:
    """Σ w r² per configuration, in numpy from the raw weights, the predictions and the labels."""
    terms = []
    for k, (record, config) in enumerate(zip(records, configs)):
        w_e, w_s, w_f = _stored_residual_weights(record["weights"], config.n_atoms)
        ds = prediction.stresses[k] - config.plus_stress
        terms.append(w_e * (prediction.energies[k] - config.energy) ** 2
                     + sum(w_s[j] * ds[a, b] ** 2 for j, (a, b) in enumerate(VASP))
                     + np.sum(w_f * (prediction.forces_of(k) - config.forces) ** 2))
    return terms


def test_file_loss_is_the_stored_weighted_sum(trained, study_set):
    """Loss(kind="file") is Σ_k Σ w r² with the stored weights exactly (1/K with the default average); the old
    1/0.01/0.001 multipliers would make the force part 100× and the stress part 1000× smaller."""
    records, configs = study_set
    dataset = mtpfit.Dataset(configs)
    x = trained.theta
    summed = mtpfit.Objective(trained, dataset, mtpfit.Loss(kind="file", average=False, penalty=False))
    terms = _sum_w_r2(records, configs, summed.predict(x))
    assert summed.fun(x) == pytest.approx(sum(terms), rel=1e-12)
    np.testing.assert_allclose(summed.per_configuration(x), terms, rtol=1e-12)
    averaged = mtpfit.Objective(trained, dataset, mtpfit.Loss(kind="file", penalty=False))
    assert averaged.fun(x) == pytest.approx(sum(terms) / len(terms), rel=1e-12)
    # the force and stress parts are not negligible, so a 0.01 / 0.001 multiplier could not pass
    force_part = sum(np.sum(_stored_residual_weights(r["weights"], c.n_atoms)[2]
                            * (summed.predict(x).forces_of(k) - c.forces) ** 2)
                     for k, (r, c) in enumerate(zip(records, configs)))
    assert force_part > 0.01 * sum(terms)


def test_agpd_stress_is_plus_stress_in_mlip_order():
    """The data decides the study's stress convention: an MTP fitted to the energies and forces of a quarter of
    the Ag–Pd training set alone (stress weight 0, level 08, 15 varpro-LM iterations, ~4 s) predicts the stored
    off-diagonal values, read as the default eV PlusStress in MLIP order, with slope 1 and R² > 0.99; read as VASP
    kBar in VASP order (the convention the shared README first gave), they are misplaced (R² < 0.2) and 2.84×
    too small. Only shear is checked: all Ag–Pd cells have one volume, so the fit cannot fix the pressure."""
    from mtpfit.optim.varpro_lm import varpro_lm

    path = shared_path("data", "AgPd", "train.json")
    default = mtpfit.Dataset(read_study_json(path)[::4])
    vasp = mtpfit.Dataset(read_study_json(path, **AS_VASP)[::4])
    mtp = mtpfit.MTP.from_level(8, species=[0, 1], min_dist=1.9, max_dist=5.0)
    loss = mtpfit.Loss(kind="file", average=False, penalty=False, stress=0.0)
    fitted = varpro_lm(mtpfit.Objective(mtp, default, loss), mtp.init_params(0.1, 43), max_iter=15, sketch=8)
    predicted = mtpfit.Objective(mtp.copy(fitted.x), default).predict().stresses
    for dataset, fits in ((default, True), (vasp, False)):
        labels = np.array([c.plus_stress for c in dataset])
        for a, b in ((1, 2), (0, 2), (0, 1)):
            y, x = predicted[:, a, b], labels[:, a, b]
            slope = (x @ y) / (x @ x)
            r2 = 1 - np.sum((y - slope * x) ** 2) / np.sum((y - y.mean()) ** 2)
            if fits:
                assert r2 > 0.99 and slope == pytest.approx(1.0, abs=0.03), (a, b, slope, r2)
            else:
                assert r2 < 0.2, (a, b, slope, r2)
