"""Validation errors along a run, every so many seconds of training (issue 16: time-to-accuracy curves)."""
import math

import pytest

from mtpfit import MTP, Loss, Objective, TrainingConfig, fit
from mtpfit.bench.runner import validation_curve
from mtpfit.datasets import load_bundled
from mtpfit.metrics import error_metrics
from mtpfit.optim import make_optimizer
from mtpfit.optim.linear import linear_resolve
from mtpfit.train import train_full_batch
from mtpfit.train.hybrid import train_hybrid
from mtpfit.train.minibatch import train_minibatch

EVERY_TIME = 1e-9  # s: every iteration or step is past it


@pytest.fixture(scope="module")
def mo():
    train, test = load_bundled("mlearn-Mo")
    mtp = MTP.from_level(6, species=["Mo"], min_dist=2.0, max_dist=5.2)
    mtp.theta = mtp.init_params(interval=0.1, seed=3)
    return train[:12], test[:4], mtp


def errors_of(mtp, dataset, x):
    return error_metrics(dataset, Objective(mtp, dataset).predict(x))["all"]


@pytest.mark.parametrize("method", ["varpro", "BFGS", "LM"])
def test_full_batch_rows_carry_the_validation_errors_of_their_iterate(mo, method):
    train, test, mtp = mo
    objective = Objective(mtp, train, Loss())
    start = linear_resolve(objective, mtp.theta)   # as fit starts LM and BFGS (varpro solves its own)
    run = train_full_batch(objective, start, method, max_iter=4, validation=test, log_every=0,
                           validate_seconds=EVERY_TIME, progress=None)
    rows = [row for row in run.history if "val_epa_rmse" in row]
    assert len(rows) == len(run.history) == run.result.nit
    # the last iterate is the result: its row holds the final validation errors
    final = run.errors["validation"]["all"]
    assert rows[-1]["val_epa_rmse"] == pytest.approx(final["epa_rmse"], rel=1e-12)
    assert rows[-1]["val_force_rmse"] == pytest.approx(final["force_rmse"], rel=1e-12)
    # and the first is not the last (the errors are of each iterate, not copied)
    assert rows[0]["val_force_rmse"] != rows[-1]["val_force_rmse"]


def test_full_batch_validates_only_as_often_as_asked(mo):
    train, test, mtp = mo
    run = train_full_batch(Objective(mtp, train, Loss()), mtp.theta, "BFGS", max_iter=5, validation=test,
                           log_every=0, validate_seconds=1e6, progress=None)
    assert [row["iteration"] for row in run.history if "val_epa_rmse" in row] == [1]


def test_minibatch_validates_on_the_clock(mo):
    train, test, mtp = mo
    run = train_minibatch(Objective(mtp, train, Loss()), make_optimizer("adam", lr=1e-3), mtp.theta, epochs=2,
                          batch_size=4, validation=test, validate_every=10_000, validate_seconds=EVERY_TIME,
                          progress=None)
    assert len(run.history) == 6
    assert all("val_force_rmse" in row for row in run.history)
    assert run.history[-1]["val_epa_rmse"] == pytest.approx(errors_of(mtp, test, run.x)["epa_rmse"], rel=1e-12)


def test_hybrid_curve_counts_the_second_stage_from_the_end_of_the_first(mo):
    train, test, mtp = mo
    run = train_hybrid(Objective(mtp, train, Loss()), make_optimizer("adam", lr=1e-3), "BFGS", mtp.theta,
                       epochs=1, batch_size=4, validation=test, refine_iter=3, validate_seconds=EVERY_TIME,
                       progress=None)
    curve = validation_curve(run.history)
    stages = [row["stage"] for row in run.history if "val_epa_rmse" in row]
    assert stages == [1, 1, 1, 2, 2, 2]
    times = [t for t, _, _ in curve]
    assert times == sorted(times)
    first_end = max(row["elapsed_s"] for row in run.history if row["stage"] == 1)
    assert times[3] >= first_end
    assert curve[-1][2] == pytest.approx(run.errors["validation"]["all"]["force_rmse"], rel=1e-12)


def test_fit_writes_the_curve_into_history_csv(mo, tmp_path):
    train, test, _ = mo
    config = TrainingConfig(train=train, validation=test, level=6, min_dist=2.0, max_dist=5.2, optimizer="varpro",
                            max_iter=3, validate_seconds=1e-6, output=tmp_path / "run", quiet=True)
    run = fit(config)
    header, *lines = (tmp_path / "run" / "history.csv").read_text().splitlines()
    columns = header.split(",")
    assert "val_force_rmse" in columns
    last = dict(zip(columns, lines[-1].split(",")))
    assert math.isclose(float(last["val_force_rmse"]), run.errors["validation"]["all"]["force_rmse"], rel_tol=1e-9)


def test_validate_seconds_must_be_positive():
    with pytest.raises(ValueError, match="validate_seconds"):
        TrainingConfig(validate_seconds=0.0)
