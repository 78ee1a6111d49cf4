"""The variable-projection trainer (python/mtpfit/optim/varpro.py): descent, the linear optimum at every iterate,
the native BFGS's pre-training as its special case, budgets, and the command line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtpfit import MTP, Dataset, Loss, Objective
from mtpfit.cli import main
from mtpfit.io import read_cfg
from mtpfit.optim.native_bfgs import native_bfgs
from mtpfit.optim.varpro import varpro

DATA = Path(__file__).parent / "data" / "mlip2"


@pytest.fixture(scope="module")
def problem():
    mtp = MTP.from_level(8, species=[0, 1, 2], min_dist=2, max_dist=5)
    return mtp, Dataset(read_cfg(DATA / "level08_multi" / "train100.cfg")[:8])


def test_varpro_descends_and_every_iterate_is_at_the_linear_optimum(problem):
    mtp, data = problem
    objective = Objective(mtp, data, Loss(), n_threads=2)
    start = objective.fun(mtp.theta)
    iterates = []
    result = varpro(objective, mtp.theta, max_iter=15, stop_tolerance=0, callback=lambda r: iterates.append(r.x))
    assert result.nit == 15 and len(iterates) == 15 and result.success
    losses = np.array([row["loss"] for row in result.history])
    assert np.all(np.diff(losses) <= 1e-12 * losses[:-1])             # strong-Wolfe steps decrease L̃
    assert losses[-1] < 0.2 * losses[0] < start
    linear = slice(mtp.blocks["species"].start, mtp.n_params)
    for x in (iterates[3], iterates[-1], result.x):
        g = objective.jac(x)
        assert np.linalg.norm(g[linear]) < 1e-6 * np.linalg.norm(g[mtp.blocks["radial"]])
    assert result.fun == pytest.approx(objective.fun(result.x), rel=1e-12)
    assert result.n_resolves >= result.nit and result.nfev <= result.n_resolves + 1


def test_varpro_is_the_native_bfgs_pre_training(problem):
    """The same steps: varpro for k iterations = the native BFGS with k pre-training iterations and no main phase."""
    mtp, data = problem
    a = varpro(Objective(mtp, data, Loss(), n_threads=2), mtp.theta, max_iter=6, stop_tolerance=0)
    b = native_bfgs(Objective(mtp, data, Loss(), n_threads=2), mtp.theta, max_iter=0, pretrain_iter=6,
                    stop_tolerance=0)
    np.testing.assert_array_equal([r["loss"] for r in a.history], [r["loss"] for r in b.history])
    # the native BFGS ends with one more re-solve (from the re-solved θ: a round-off change)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-9, atol=1e-12 * np.abs(a.x).max())


def test_varpro_wall_time_budget_is_reported_as_such(problem):
    mtp, data = problem
    result = varpro(Objective(mtp, data, Loss(), n_threads=2), mtp.theta, max_iter=100, time_limit=1e-9)
    assert result.nit == 1 and not result.success
    assert "wall-time budget" in result.message


def test_varpro_from_the_command_line(tmp_path, capsys):
    train = DATA / "level08_multi" / "train100.cfg"
    code = main(["train", "--train", str(train), "--level", "6", "--max-iter", "5", "--threads", "1",
                 "--quiet", "--output", str(tmp_path / "run")])
    assert code == 0
    out = capsys.readouterr().out
    assert "varpro" in out and "linear solves" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["optimizer"]["nit"] == 5
