"""Variable projection with Levenberg–Marquardt steps (python/mtpfit/optim/varpro_lm.py): Kaufman's matrix as
the projected Gauss–Newton matrix of the reduced residuals, and the trainer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtpfit import MTP, Dataset, Loss, Objective
from mtpfit.cli import main
from mtpfit.io import read_cfg
from mtpfit.optim.linear import linear_resolve
from mtpfit.optim.varpro import varpro
from mtpfit.optim.varpro_lm import kaufman_matrix, varpro_lm

DATA = Path(__file__).parent / "data" / "mlip2"


@pytest.fixture(scope="module")
def problem():
    mtp = MTP.from_level(6, species=[0, 1, 2], min_dist=2, max_dist=5)
    data = Dataset(read_cfg(DATA / "level08_multi" / "train100.cfg")[:3])
    objective = Objective(mtp, data, Loss(), n_threads=2)
    return objective, linear_resolve(objective, mtp.init_params(0.3, 5))


def test_kaufman_matrix_is_the_projected_gauss_newton_matrix(problem):
    """S = (W½J_r)ᵀ P⊥ (W½J_r), P⊥ the projector off the range of W½J_l, J built row by row from reverse passes."""
    objective, x = problem
    mtp = objective.mtp
    r, w = objective.residuals(x)
    unit = np.eye(len(r))
    J = np.array([objective.residual_vjp(x, unit[k]) for k in range(len(r))])
    WJ = np.sqrt(w)[:, None] * J
    radial = mtp.blocks["radial"]
    linear = slice(mtp.blocks["species"].start, mtp.n_params)
    Q, s, _ = np.linalg.svd(WJ[:, linear], full_matrices=False)
    Q = Q[:, s > 1e-12 * s[0]]
    projected = WJ[:, radial] - Q @ (Q.T @ WJ[:, radial])
    expected = projected.T @ projected
    _, H, _ = objective.gauss_newton(x)
    np.testing.assert_allclose(H, WJ.T @ WJ, rtol=1e-9, atol=1e-12 * np.abs(H).max())
    S = kaufman_matrix(H, radial, linear)
    assert np.abs(S - expected).max() < 1e-7 * np.abs(expected).max()
    # it is strictly smaller than H_rr: the linear block explains part of every radial direction
    assert np.trace(S) < np.trace(H[radial, radial])
    assert np.linalg.eigvalsh(S).min() > -1e-9 * np.abs(S).max()


def test_kaufman_matrix_ignores_undetermined_linear_directions():
    """Zero linear columns (species absent from the data) and a duplicated column change nothing."""
    rng = np.random.default_rng(0)
    J = rng.normal(size=(40, 6))
    H = J.T @ J
    radial, linear = slice(0, 3), slice(3, 6)
    base = kaufman_matrix(H, radial, linear)
    padded = np.zeros((8, 8))
    padded[:6, :6] = H
    Jd = np.hstack([J, J[:, 5:6], J[:, 4:5]])
    Hd = Jd.T @ Jd
    np.testing.assert_allclose(kaufman_matrix(padded, radial, slice(3, 8)), base, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kaufman_matrix(Hd, radial, slice(3, 8)), base, rtol=1e-9, atol=1e-9)


def test_varpro_lm_descends_with_every_iterate_at_the_linear_optimum(problem):
    objective, _ = problem
    mtp = objective.mtp
    x0 = mtp.init_params(0.3, 5)
    iterates = []
    result = varpro_lm(objective, x0, max_iter=12, sketch=0, callback=lambda r: iterates.append((r.x, r.fun)))
    losses = np.array([row["loss"] for row in result.history])
    assert np.all(np.diff(losses) <= 1e-12 * losses[:-1])             # only steps that lower L̃ are taken
    linear = slice(mtp.blocks["species"].start, mtp.n_params)
    for x, fun in iterates[2::4] + [(result.x, result.fun)]:
        g = objective.jac(x)
        assert np.linalg.norm(g[linear]) < 1e-6 * np.linalg.norm(g[mtp.blocks["radial"]])
        assert fun == pytest.approx(objective.fun(x), rel=1e-10)
    assert result.n_resolves >= result.nit and result.njev >= 1
    # Gauss–Newton curvature on the reduced loss: lower than BFGS's after as many iterations
    bfgs = varpro(objective, x0, max_iter=12, stop_tolerance=0)
    assert result.fun < bfgs.fun


def test_varpro_lm_from_the_command_line(tmp_path, capsys):
    train = DATA / "level08_multi" / "train100.cfg"
    code = main(["train", "--train", str(train), "--level", "6", "--optimizer", "varpro-LM", "--max-iter", "4",
                 "--threads", "1", "--quiet", "--output", str(tmp_path / "run")])
    assert code == 0
    out = capsys.readouterr().out
    assert "varpro-LM" in out and "JᵀWJ builds" in out and "linear solves" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["optimizer"]["nit"] == 4


def test_varpro_lm_resumes_on_the_same_trajectory(problem):
    """Stopped after 3 iterations and resumed from the callback's state: the same θ as an uninterrupted run."""
    objective, _ = problem
    x0 = objective.mtp.init_params(0.3, 5)
    whole = varpro_lm(objective, x0, max_iter=7, sketch=4)
    saved = {}

    def stop_at_3(r):
        if r.nit == 3:
            saved["state"] = r.state()
            raise StopIteration

    varpro_lm(objective, x0, max_iter=7, sketch=4, callback=stop_at_3)
    resumed = varpro_lm(objective, x0, max_iter=7, sketch=4, resume=saved["state"])
    np.testing.assert_array_equal(resumed.x, whole.x)
    assert resumed.nit == whole.nit == 7
    assert [row["loss"] for row in resumed.history] == [row["loss"] for row in whole.history]
