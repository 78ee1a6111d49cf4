"""The optimizer zoo: every optimizer trains the level-10 Mo MTP at its defaults; exact resume; state I/O."""
import math

import numpy as np
import pytest

from conftest import DATA
from mtpfit import MTP, Dataset, Objective
from mtpfit.datasets import load_bundled
from mtpfit.io import read_cfg
from mtpfit.metrics import error_metrics
from mtpfit.optim import OPTIMIZERS, ParameterBlocks, make_optimizer
from mtpfit.optim.muon import matrix_shape, newton_schulz
from mtpfit.optim.state import flatten_state, unflatten_state
from mtpfit.train import fit_species_energies
from mtpfit.train.minibatch import train_minibatch


@pytest.fixture(scope="module")
def mo():
    train, test = load_bundled()
    mtp = MTP.from_level(10, species=["Mo"], min_dist=2.0, max_dist=5.2)
    objective = Objective(mtp, train)
    x0 = fit_species_energies(objective, mtp.theta)
    initial = error_metrics(test, Objective(mtp, test).predict(x0))["all"]["force_rmse"]
    return objective, test, x0, initial


# Epochs each optimizer gets (default 5). SOAP's first step only initialises its eigenbases and its early steps fit
# the energies: after 5 epochs of batch 16 its training and validation losses are down (validation 13.7 → 11.4)
# but the validation force RMSE is not yet (1.568 → 1.585 on an AMD EPYC build, just below 1.568 on the machine the
# test was first written on); after 20 epochs it is 0.49. 20 epochs are not given to all: at its defaults
# schedule-free SGD diverges after about 12 epochs and LAMB's force RMSE rises again (benchmarks/RESULTS.md §12).
EPOCHS = {"soap": 20}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_trains_mo_at_its_defaults(mo, name):
    """Issue 4, acceptance 2: no NaN, and the validation force RMSE ends below the initial θ's."""
    objective, test, x0, initial = mo
    result = train_minibatch(objective, make_optimizer(name), x0, epochs=EPOCHS.get(name, 5), batch_size=16,
                             progress=None)
    assert np.all(np.isfinite(result.x)) and math.isfinite(result.fun)
    assert all(math.isfinite(row["batch_loss"]) for row in result.history)
    final = error_metrics(test, Objective(objective.mtp, test).predict(result.x))["all"]["force_rmse"]
    assert final < initial, f"{name}: {final} >= {initial}"


@pytest.fixture(scope="module")
def small():
    data = Dataset(read_cfg(DATA / "mlip2" / "level08_multi" / "train100.cfg")[:24])
    mtp = MTP.from_level(6, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    objective = Objective(mtp, data)
    return objective, fit_species_energies(objective, mtp.theta)


@pytest.mark.parametrize("name", ["adam", "soap", "schedule_free_adamw", "lookahead", "muon", "ranger", "momentum"])
def test_resume_continues_the_same_trajectory(small, tmp_path, name):
    """Issue 4, acceptance 3: stopped at step k and resumed equals the uninterrupted run at step 2k."""
    objective, x0 = small
    k = 7  # not a multiple of the 3 batches per epoch: the stop falls inside an epoch
    settings = dict(epochs=100, batch_size=8, seed=3, progress=None)
    straight = train_minibatch(objective, make_optimizer(name), x0, max_steps=2 * k, **settings)
    ckpt = tmp_path / "run.npz"
    first = train_minibatch(objective, make_optimizer(name), x0, max_steps=k, checkpoint=ckpt, **settings)
    assert first.nit == k
    resumed = train_minibatch(objective, make_optimizer(name), x0, max_steps=2 * k, checkpoint=ckpt, **settings)
    assert resumed.nit == 2 * k
    np.testing.assert_allclose(resumed.x, straight.x, rtol=1e-12, atol=0)
    assert [r["batch_loss"] for r in resumed.history] == pytest.approx([r["batch_loss"] for r in straight.history],
                                                                       rel=1e-12)


def test_state_round_trip_and_early_stopping(small, tmp_path):
    objective, x0 = small
    opt = make_optimizer("soap")
    blocks = ParameterBlocks.of(objective.mtp)
    state = opt.init(x0, blocks)
    x, state = opt.step(objective.jac(x0), state, x0)
    x, state = opt.step(objective.jac(x), state, x)
    again = unflatten_state(flatten_state(state))
    x1, s1 = opt.step(objective.jac(x), state, x)
    x2, s2 = opt.step(objective.jac(x), again, x)
    assert np.array_equal(x1, x2)
    valid = objective.dataset[:6]
    result = train_minibatch(objective, make_optimizer("adam", lr=3e-2), x0, epochs=50, batch_size=8,
                             validation=valid, patience=2, progress=None)
    assert "early stopping" in result.message or result.epochs == 50
    vals = [r["val_force_rmse"] for r in result.history if "val_force_rmse" in r]
    final = error_metrics(valid, Objective(objective.mtp, valid).predict(result.x))["all"]["force_rmse"]
    assert final == pytest.approx(min(vals), rel=1e-12)


def test_muon_shapes_and_single_row():
    assert matrix_shape(383, "factorization") == (1, 383)  # prime: one row
    assert matrix_shape(384, "factorization") == (16, 24)
    assert matrix_shape(383, "pad_sqrt") == (20, 20)
    g = np.random.default_rng(0).normal(size=(1, 50))
    out = newton_schulz(g)
    # one singular value: a multiple of g/‖g‖ near 0.7 (OPTIMIZERS.md)
    assert np.allclose(out / np.linalg.norm(out), g / np.linalg.norm(g), atol=1e-12)
    assert 0.6 < np.linalg.norm(out) < 1.2
    M = np.random.default_rng(1).normal(size=(5, 8))
    s = np.linalg.svd(newton_schulz(M), compute_uv=False)
    assert np.all((s > 0.6) & (s < 1.25))


def test_unknown_optimizer_and_hyperparameter():
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'"):
        make_optimizer("adamx")
    with pytest.raises(ValueError, match="momentumm"):
        make_optimizer("sgd", momentumm=0.9)


def test_periodic_perturbation_is_seeded_and_periodic(small):
    objective, x0 = small
    blocks = ParameterBlocks.of(objective.mtp)
    plain, noisy = make_optimizer("adam"), make_optimizer("adam", perturb_sigma=1e-3, perturb_every=3, perturb_seed=5)
    sp, sn = plain.init(x0, blocks), noisy.init(x0, blocks)
    xp, xn = x0.copy(), x0.copy()
    for k in range(1, 7):
        g = objective.jac(xp)
        xp, sp = plain.step(g, sp, xp)
        xn, sn = noisy.step(g, sn, xn)
        if k < 3:
            assert np.array_equal(xp, xn)
        if k == 3:  # the first perturbation: exactly the seeded draw
            np.testing.assert_allclose(xn - xp, np.random.default_rng((5, 3)).normal(0, 1e-3, x0.shape), rtol=0,
                                       atol=1e-15)
            xp = xn.copy()  # compare the next period from the same point


def test_a_finite_runaway_counts_as_divergence(small):
    """A loss that grows a billion-fold but stays finite (LAMB at level 16 reached 1e236) must stop the run as
    diverged, not end it with astronomic errors that look like a result."""
    from mtpfit.optim.base import Optimizer, Transform
    from mtpfit.train.minibatch import DIVERGENCE_FACTOR

    objective, x0 = small
    # each step doubles θ: the loss grows geometrically and stays finite for far longer than the run
    doubling = Optimizer("doubling", Transform(lambda params, blocks: (), lambda g, state, params: (params, state)))
    with pytest.raises(FloatingPointError, match=r"doubling: the batch loss .* at step \d+ is over 1e\+08 times the "
                                                 r"first one .*: diverged"):
        train_minibatch(objective, doubling, x0, epochs=200, batch_size=24, progress=None)
    steps = []
    for k in range(60):
        x = x0 * 2.0 ** k
        steps.append(objective.fun_and_jac(x, np.arange(24))[0])
    assert max(steps) > DIVERGENCE_FACTOR * steps[0] and np.isfinite(max(steps))   # the runaway stays finite
    # an ordinary run is not affected
    result = train_minibatch(objective, make_optimizer("adam"), x0, epochs=3, batch_size=8, progress=None)
    assert result.success
