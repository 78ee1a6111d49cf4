"""What a training run leaves for judging the fit (issue 15): written predictions, parity plots, loss curves."""
import dataclasses
import math
import warnings

import ase.io
import numpy as np
import pytest

from mtpfit import MTP, Dataset, Objective
from mtpfit.analysis.parity import (history_series, loss_curve_plot, parity_figure, parity_plot,
                                    parity_statistics)
from mtpfit.datasets import load_bundled
from mtpfit.io import read_cfg, read_configurations
from mtpfit.io.write import write_predictions
from mtpfit.metrics import EV_PER_A3_TO_GPA, error_metrics
from mtpfit.optim import make_optimizer
from mtpfit.train import train_full_batch, write_run
from mtpfit.train.hybrid import train_hybrid
from mtpfit.train.minibatch import train_minibatch

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])


@pytest.fixture(scope="module")
def mo():
    """Four small mlearn Mo configurations of three groups, three test ones, a level-6 MTP with random θ."""
    train, test = load_bundled("mlearn-Mo")
    mtp = MTP.from_level(6, species=["Mo"], min_dist=2.0, max_dist=5.2)
    mtp.theta = mtp.init_params(interval=0.1, seed=3)
    return train.subset([0, 134, 135, 192], "train"), test[:3], mtp


def predict(mtp, dataset):
    return Objective(mtp, dataset).predict()


def unlabelled(dataset):
    """The dataset with its first configuration stripped of every label and its second turned into a molecule."""
    first, second, *rest = dataset
    return Dataset([dataclasses.replace(first, energy=None, forces=None, plus_stress=None),
                    dataclasses.replace(second, cell=None, pbc=None, plus_stress=None), *rest], "partly labelled")


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000   # a drawn figure, not an empty canvas


def test_extxyz_reads_back_as_the_predictions_with_the_dft_labels_kept(mo, tmp_path):
    dataset, _, mtp = mo
    p = predict(mtp, dataset)
    path = write_predictions(tmp_path / "predictions.extxyz", dataset, p)
    assert [f.name for f in tmp_path.iterdir()] == ["predictions.extxyz"]     # the temporary file is gone
    back = read_configurations(path)
    frames = ase.io.read(path, ":")
    assert len(back) == len(frames) == len(dataset)
    for k, (c, read, atoms) in enumerate(zip(dataset, back, frames)):
        assert abs(read.energy - p.energies[k]) <= 1e-10
        np.testing.assert_allclose(read.forces, p.forces_of(k), rtol=0, atol=1e-10)
        # the file holds the symmetric stress (Voigt); S is symmetric up to round-off
        np.testing.assert_allclose(read.plus_stress, p.stresses[k][VOIGT][[[0, 5, 4], [5, 1, 3], [4, 3, 2]]],
                                   rtol=1e-13, atol=1e-10)
        np.testing.assert_array_equal(read.positions, c.positions)
        np.testing.assert_array_equal(read.cell, c.cell)
        assert list(read.species) == list(c.species) and read.group == c.group
        assert atoms.info["dft_energy"] == c.energy
        np.testing.assert_array_equal(atoms.arrays["dft_forces"], c.forces)
        np.testing.assert_allclose(atoms.info["dft_stress"], (-c.plus_stress / c.volume)[VOIGT], rtol=1e-15)
        np.testing.assert_allclose(atoms.get_stress(), (-p.stresses[k] / c.volume)[VOIGT], rtol=1e-13, atol=1e-14)
        assert atoms.info["config_type"] == c.group and atoms.info["source"] == c.source


def test_cfg_holds_the_predictions_in_place_of_the_labels(mo, tmp_path):
    dataset, _, mtp = mo
    p = predict(mtp, dataset)
    back = read_cfg(write_predictions(tmp_path / "predictions.cfg", dataset, p, species=mtp.species))
    for k, (c, read) in enumerate(zip(dataset, back)):
        assert read.energy == p.energies[k]
        np.testing.assert_array_equal(read.forces, p.forces_of(k))
        np.testing.assert_array_equal(np.triu(read.plus_stress), np.triu(p.stresses[k]))
        np.testing.assert_array_equal(read.species, np.zeros(c.n_atoms))
        assert read.group == c.group and read.features["EFS_by"] == "mtpfit"


@pytest.mark.parametrize("name", ["predictions.xyz", "predictions.cfg"])
def test_configurations_without_labels_or_cell_write_and_read_back(mo, tmp_path, name):
    dataset, _, mtp = mo
    partial = unlabelled(dataset)
    p = predict(mtp, partial)
    back = read_configurations(write_predictions(tmp_path / name, partial, p))
    for k, read in enumerate(back):
        assert abs(read.energy - p.energies[k]) <= 1e-10
        np.testing.assert_allclose(read.forces, p.forces_of(k), rtol=0, atol=1e-10)
    assert back[1].cell is None
    if name.endswith(".xyz"):
        assert back[1].plus_stress is None      # σ = −S/V needs a volume
        frames = ase.io.read(tmp_path / name, ":")
        assert "dft_energy" not in frames[0].info and "dft_forces" not in frames[0].arrays
        assert "dft_stress" not in frames[0].info and "dft_stress" not in frames[1].info
        assert frames[1].info["dft_energy"] == partial[1].energy
    else:
        np.testing.assert_array_equal(np.triu(back[1].plus_stress), np.triu(p.stresses[1]))


def test_a_force_mask_is_kept_in_extxyz(mo, tmp_path):
    dataset, _, mtp = mo
    c = dataset[2]
    mask = np.arange(c.n_atoms) % 2 == 0
    masked = Dataset([dataclasses.replace(c, force_mask=mask)], "masked")
    write_predictions(tmp_path / "masked.extxyz", masked, predict(mtp, masked))
    (atoms,) = ase.io.read(tmp_path / "masked.extxyz", ":")
    np.testing.assert_array_equal(atoms.arrays["dft_force_mask"], mask)


def test_integer_types_need_their_symbols_for_extxyz(mo, tmp_path):
    dataset, _, mtp = mo
    c = dataset[3]
    typed = Dataset([dataclasses.replace(c, species=np.zeros(c.n_atoms, dtype=np.int64))], "typed")
    p = predict(MTP(mtp.basis, mtp.theta), typed)
    with pytest.raises(ValueError, match=r"integer types.*species=.*\.cfg"):
        write_predictions(tmp_path / "typed.xyz", typed, p)
    with pytest.raises(ValueError, match="type 0 has no symbol"):
        write_predictions(tmp_path / "typed.xyz", typed, p, species=[])
    (read,) = read_configurations(write_predictions(tmp_path / "typed.xyz", typed, p, species=["Mo"]))
    assert list(read.species) == ["Mo"] * c.n_atoms
    (read,) = read_cfg(write_predictions(tmp_path / "typed.cfg", typed, p))
    assert read.energy == p.energies[0]


def test_bad_formats_and_mismatched_predictions_are_refused(mo, tmp_path):
    dataset, test, mtp = mo
    p = predict(mtp, dataset)
    with pytest.raises(ValueError, match=r"predictions\.json.*extxyz.*cfg"):
        write_predictions(tmp_path / "predictions.json", dataset, p)
    with pytest.raises(ValueError, match="format 'traj'"):
        write_predictions(tmp_path / "predictions.xyz", dataset, p, format="traj")
    with pytest.raises(ValueError, match="predict on the same dataset"):
        write_predictions(tmp_path / "predictions.xyz", test, p)
    with pytest.raises(ValueError, match="predictions are of 4 configurations"):
        parity_statistics(test, p)
    with pytest.raises(ValueError, match=r"parity\.xyz: matplotlib writes no 'xyz' images"):
        parity_plot(tmp_path / "parity.xyz", {"train": (dataset, p)})
    assert sorted(f.name for f in tmp_path.iterdir()) == []     # nothing written, no temporary left


def test_parity_numbers_are_error_metrics_numbers(mo):
    dataset, test, mtp = mo
    for data in (dataset, test):
        p = predict(mtp, data)
        m = error_metrics(data, p)["all"]
        s = parity_statistics(data, p)
        assert s["energy"]["rmse"] == 1e3 * m["epa_rmse"] and s["energy"]["mae"] == 1e3 * m["epa_mae"]
        assert s["forces"]["rmse"] == m["force_rmse"] and s["forces"]["mae"] == m["force_mae_component"]
        assert s["stress"]["rmse"] == m["stress_rmse_gpa"]
        # and what they mean, recomputed: per force component, per stress component of σ = −S/V in GPa
        dforce = np.concatenate([p.forces_of(k) - c.forces for k, c in enumerate(data)])
        assert s["forces"]["rmse"] == pytest.approx(np.sqrt(np.mean(dforce ** 2)), rel=1e-12)
        dsigma = np.array([(p.stresses[k] - c.plus_stress) / c.volume for k, c in enumerate(data)]) * EV_PER_A3_TO_GPA
        assert s["stress"]["rmse"] == pytest.approx(np.sqrt(np.mean(dsigma ** 2)), rel=1e-12)
        assert s["stress"]["mae"] == pytest.approx(np.mean(np.abs(dsigma)), rel=1e-12)
        assert (s["energy"]["n"], s["forces"]["n"], s["stress"]["n"]) == (len(data), 3 * data.n_atoms, len(data))


def test_parity_plot_is_a_png_whose_legend_shows_the_numbers(mo, tmp_path):
    dataset, test, mtp = mo
    sets = {"train": (dataset, predict(mtp, dataset)), "validation": (test, predict(mtp, test))}
    figure = parity_figure(sets)
    for ax, quantity in zip(figure.axes, ("energy", "forces", "stress")):
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        for label, text in zip(sets, texts):
            s = parity_statistics(*sets[label])[quantity]
            assert text.startswith(f"{label}: RMSE {s['rmse']:.3g}, MAE {s['mae']:.3g}")
    assert_png(parity_plot(tmp_path / "parity.png", sets))


# error_metrics says that the partly labelled set's errors are over its labelled configurations only
@pytest.mark.filterwarnings("ignore:.*configurations have no")
def test_parity_plot_of_unlabelled_quantities_says_so_without_nan_warnings(mo, tmp_path):
    dataset, _, mtp = mo
    molecules = Dataset([dataclasses.replace(c, cell=None, pbc=None, plus_stress=None, energy=None)
                         for c in dataset], "molecules")
    partial = unlabelled(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)    # "Mean of empty slice", "invalid value": NaN arithmetic
        sets = {"molecules": (molecules, predict(mtp, molecules)), "partial": (partial, predict(mtp, partial))}
        s = parity_statistics(*sets["molecules"])
        assert s["energy"]["rmse"] is None and s["stress"]["mae"] is None and s["stress"]["n"] == 0
        figure = parity_figure({"molecules": sets["molecules"]})
        assert_png(parity_plot(tmp_path / "parity.png", sets))
    energy, forces, stress = figure.axes
    assert "no stress labels" in stress.texts[0].get_text() and not stress.lines
    assert "no energy labels" in energy.texts[0].get_text()
    assert forces.get_legend() is not None


@pytest.fixture(scope="module")
def runs(mo):
    """Histories of a full-batch, a mini-batch and a hybrid run (a few iterations each)."""
    dataset, test, mtp = mo
    objective = Objective(mtp, dataset)
    full = train_full_batch(objective, mtp.theta, "varpro", max_iter=3, validation=test, log_every=1, progress=None)
    mini = train_minibatch(objective, make_optimizer("adam"), mtp.theta, epochs=2, batch_size=2, validation=test,
                           progress=None)
    hybrid = train_hybrid(objective, make_optimizer("adam"), "varpro", mtp.theta, epochs=2, batch_size=2,
                          validation=test, max_iter=3, progress=None)
    return full, mini, hybrid


def test_history_series_of_full_batch_mini_batch_and_hybrid_runs(runs):
    full, mini, hybrid = runs
    series = history_series(full.history)
    np.testing.assert_array_equal(series["loss"][0], np.arange(1, len(full.history) + 1))
    np.testing.assert_array_equal(series["loss"][1], [row["loss"] for row in full.history])
    np.testing.assert_array_equal(series["train_force_rmse"][1], [row["train_force_rmse"] for row in full.history])
    assert "val_force_rmse" not in series and len(series["stage_starts"][0]) == 0

    series = history_series(mini.history)
    np.testing.assert_array_equal(series["batch_loss"][1], [row["batch_loss"] for row in mini.history])
    np.testing.assert_array_equal(series["val_force_rmse"][0], [2, 4])   # two batches per epoch, validated at its end
    assert "loss" not in series

    series = history_series(hybrid.history)
    first = sum(row["stage"] == 1 for row in hybrid.history)
    np.testing.assert_array_equal(series["stage_starts"][0], [first + 1])
    assert series["loss"][0][0] == first + 1 and series["batch_loss"][0][-1] == first


def test_loss_curves_are_pngs_also_from_history_csv(runs, tmp_path):
    full, mini, hybrid = runs
    assert_png(loss_curve_plot(tmp_path / "full.png", full.history, full.errors))
    assert_png(loss_curve_plot(tmp_path / "mini.png", mini.history))
    files = write_run(hybrid, tmp_path / "run", {})
    from_csv, from_rows = history_series(files["history"]), history_series(hybrid.history)
    assert from_csv.keys() == from_rows.keys()
    for key in from_rows:
        np.testing.assert_allclose(from_csv[key][0], from_rows[key][0])
        np.testing.assert_allclose(from_csv[key][1], from_rows[key][1], rtol=1e-15)
    assert_png(loss_curve_plot(tmp_path / "hybrid.png", files["history"], hybrid.errors))
    assert_png(loss_curve_plot(tmp_path / "empty.png", []))


def test_final_errors_alone_give_an_error_panel(runs):
    from mtpfit.analysis.parity import loss_curve_figure

    full, _, _ = runs
    rows = [{k: v for k, v in row.items() if not k.startswith("train_")} for row in full.history]
    assert len(loss_curve_figure(rows).axes) == 1
    figure = loss_curve_figure(rows, full.errors)
    markers = [line.get_ydata()[0] for ax in figure.axes[1:] for line in ax.lines]
    expected = [1e3 * full.errors["train"]["all"]["epa_rmse"], full.errors["train"]["all"]["force_rmse"],
                1e3 * full.errors["validation"]["all"]["epa_rmse"], full.errors["validation"]["all"]["force_rmse"]]
    assert sorted(markers) == pytest.approx(sorted(v for v in expected if math.isfinite(v)))
