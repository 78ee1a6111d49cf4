"""Training, validation and the studies' error summaries on sets that lack a quantity entirely (no energies, no
stresses): :func:`mtpfit.metrics.error_metrics` gives None for it, which is printed as "—" and kept as None."""
import copy
import math

import pytest

from mtpfit import MTP, Objective
from mtpfit.analysis.landscape import _errors
from mtpfit.data.dataset import Dataset
from mtpfit.datasets import load_bundled
from mtpfit.optim import make_optimizer
from mtpfit.relax.study import _fit_errors
from mtpfit.train import train_full_batch
from mtpfit.train.minibatch import train_minibatch


@pytest.fixture(scope="module")
def small():
    """The six smallest-cell (≤ 20 atoms) configurations of the bundled mlearn Mo training set."""
    train, _ = load_bundled("mlearn-Mo")
    return [c for c in train if c.n_atoms <= 20][:6]


def _without(configurations, name, **labels) -> Dataset:
    """Copies of ``configurations`` with the given labels set (to None)."""
    copies = [copy.deepcopy(c) for c in configurations]
    for c in copies:
        for label, value in labels.items():
            setattr(c, label, value)
    return Dataset(copies, name)


def _mtp() -> MTP:
    return MTP.from_level(6, species=["Mo"], min_dist=2.0, max_dist=5.2)


def test_full_batch_log_without_stresses(small):
    data = _without(small, "no stress", plus_stress=None)
    mtp = _mtp()
    lines = []
    run = train_full_batch(Objective(mtp, data), mtp.init_params(0.1, 0), "BFGS", max_iter=3, log_every=1,
                           progress=lines.append)
    assert len(run.history) == 3
    for row in run.history:
        assert math.isfinite(row["train_epa_rmse"]) and math.isfinite(row["train_force_rmse"])
    assert all("meV/atom" in line and "—" not in line for line in lines if line.startswith("iter"))
    assert run.errors["train"]["all"]["stress_rmse"] is None


def test_full_batch_log_without_energies(small, tmp_path):
    data = _without(small, "no energy", energy=None)
    mtp = _mtp()
    objective, x0 = Objective(mtp, data), mtp.init_params(0.1, 0)
    lines = []
    run = train_full_batch(objective, x0, "BFGS", max_iter=3, log_every=1, checkpoint=tmp_path / "run.npz",
                           progress=lines.append)
    logged = [line for line in lines if line.startswith("iter")]
    assert len(logged) == 3 and all("train EPA RMSE —  force RMSE " in line for line in logged)
    assert all(row["train_epa_rmse"] is None and row["train_force_rmse"] > 0 for row in run.history)
    # the checkpoint keeps the absent errors: a resumed run's history still has them as None
    resumed = train_full_batch(objective, x0, "BFGS", max_iter=4, log_every=1, checkpoint=tmp_path / "run.npz",
                               progress=None)
    assert [row["train_epa_rmse"] for row in resumed.history] == [None] * 4
    assert [r["train_force_rmse"] for r in resumed.history[:3]] == [r["train_force_rmse"] for r in run.history]


def test_minibatch_validates_on_set_without_energies(small):
    train = Dataset(small[:4], "train")
    validation = _without(small[4:], "no-energy validation", energy=None)
    mtp = _mtp()
    lines = []
    # early stopping on the forces, which the validation set has, is allowed
    result = train_minibatch(Objective(mtp, train), make_optimizer("adam", lr=1e-3), mtp.init_params(0.1, 0),
                             epochs=2, batch_size=2, validation=validation, patience=5, progress=lines.append)
    validated = [row for row in result.history if "val_epa_rmse" in row]
    assert len(validated) == 2
    assert all(row["val_epa_rmse"] is None and row["val_force_rmse"] > 0 for row in validated)
    shown = [line for line in lines if "validation" in line]
    assert len(shown) == 2 and all("validation EPA RMSE —  force RMSE " in line for line in shown)


@pytest.mark.parametrize("monitor, labels, needs", [("epa_rmse", {"energy": None}, "an energy"),
                                                    ("stress_rmse", {"plus_stress": None}, "a stress")])
def test_patience_on_absent_quantity_raises_before_training(small, monitor, labels, needs):
    validation = _without(small[4:], "unlabelled validation", **labels)
    mtp = _mtp()
    objective = Objective(mtp, Dataset(small[:4], "train"))
    lines = []
    with pytest.raises(ValueError, match=f"monitors '{monitor}'.*'unlabelled validation' has {needs}"):
        train_minibatch(objective, make_optimizer("adam"), mtp.init_params(0.1, 0), epochs=2, batch_size=2,
                        validation=validation, patience=2, monitor=monitor, progress=lines.append)
    assert objective.passes == 0 and lines == []


def test_unknown_monitor_raises(small):
    mtp = _mtp()
    with pytest.raises(ValueError, match="unknown monitor 'force_rmsd'.*force_rmse"):
        train_minibatch(Objective(mtp, Dataset(small[:4], "train")), make_optimizer("adam"),
                        mtp.init_params(0.1, 0), validation=Dataset(small[4:], "validation"),
                        monitor="force_rmsd", progress=None)


def test_study_summaries_keep_absent_errors_none(small):
    mtp = _mtp()
    theta = mtp.init_params(0.1, 0)
    data = _without(small, "no energy", energy=None)
    fit = _fit_errors(Objective(mtp.copy(theta), data), theta)
    assert fit["epa_rmse_meV"] is None and fit["force_rmse"] > 0
    validation = _errors(Objective(mtp, Dataset(small, "train")), data, theta)
    assert validation["val_epa_rmse_meV"] is None and validation["val_force_rmse"] == pytest.approx(fit["force_rmse"])
    labelled = _errors(Objective(mtp, Dataset(small, "train")), Dataset(small, "labelled"), theta)
    assert labelled["val_epa_rmse_meV"] > 0
