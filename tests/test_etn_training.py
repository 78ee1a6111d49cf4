"""Training an ETN (issue 19): the Objective's model protocol, the trainers on an ETN objective, the ALS sweep
trainer (mtpfit.optim.als), the ASE calculator, and the Fisher and Hessian analyses; on the tiny 2-species
problem of tests/etn_problem.py."""
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from scipy.optimize import minimize

import etn_problem as problem
import mtpfit
from mtpfit.analysis.fisher import analyse_fisher
from mtpfit.analysis.hessian import hessian_spectrum
from mtpfit.optim import ParameterBlocks, make_optimizer
from mtpfit.optim.als import als, solve_core
from mtpfit.optim.linear import linear_resolve
from mtpfit.optim.native_bfgs import native_bfgs
from mtpfit.optim.varpro import varpro
from mtpfit.optim.varpro_lm import varpro_lm
from mtpfit.potential import ETN, read_potential
from mtpfit.train.full_batch import train_full_batch
from mtpfit.train.initial import starting_point
from mtpfit.train.minibatch import train_minibatch


@pytest.fixture(scope="module")
def data():
    return problem.dataset()


@pytest.fixture(scope="module")
def objective(data):
    return mtpfit.Objective(problem.student(), data)


@pytest.fixture(scope="module")
def x0(objective):
    return starting_point(objective, objective.x0)


def _block(objective, k):
    b = objective.model.blocks
    return np.r_[np.arange(b["species"].start, b["species"].stop), np.arange(b[f"core_{k}"].start, b[f"core_{k}"].stop)]


# -- the Objective's model protocol -------------------------------------------------------------------------------
def test_objective_predicts_what_the_etn_evaluates_and_refuses_the_linear_system(objective, data, x0):
    assert objective.mtp is objective.model and isinstance(objective.model, ETN)
    predicted = objective.predict(x0)
    etn = objective.model.copy(x0)
    for k in (0, 5):
        p = etn.evaluate(data[k])
        assert predicted.energies[k] == pytest.approx(p.energy, rel=1e-13)
        np.testing.assert_allclose(predicted.forces_of(k), p.forces, rtol=1e-12, atol=1e-13)
    # the loss is the weighted sum of squares of the residuals, its gradient 2 JᵀWr
    r, w = objective.residuals(x0)
    loss, grad = objective.fun_and_jac(x0)
    assert loss == pytest.approx(np.sum(w * r * r), rel=1e-12)
    np.testing.assert_allclose(grad, 2.0 * objective.residual_vjp(x0, w * r), rtol=1e-10, atol=1e-14)
    with pytest.raises(TypeError, match="linear in its coefficients"):
        objective.linear_system(x0)


def test_start_is_the_species_fit_and_linear_trainers_refuse(objective, x0):
    # the default start fits ξ: ∂L/∂ξ = 0 there, and the loss is below the raw initial θ's
    assert abs(objective.jac(x0)[objective.model.blocks["species"]]).max() < 1e-8 * abs(objective.jac(x0)).max()
    assert objective.fun(x0) < 1e-2 * objective.fun(objective.x0)
    with pytest.raises(ValueError, match="resolve"):
        starting_point(objective, objective.x0, "resolve")
    for trainer in (varpro, varpro_lm, native_bfgs, linear_resolve):
        with pytest.raises(TypeError, match="als"):
            trainer(objective, x0)


def test_parameter_blocks_partition_theta_with_core_matrices(objective):
    etn = objective.model
    blocks = ParameterBlocks.of(etn)
    assert list(blocks.slices) == ["radial", "species", "core_1", "core_2", "core_3"] and blocks.size == etn.n_params
    c = etn.core
    assert blocks.matrices["radial"] == (c.species_count ** 2 * (c.max_l + 1), c.channels, c.radial_basis_size)
    # core 1 is A laid out (l, c, a): one (Σ n_l) × r_1 matrix
    assert blocks.matrices["core_1"] == (1, sum(c.channels + (l == 0) for l in range(c.max_l + 1)), c.ranks[0])


# -- trainers -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["BFGS", "L-BFGS-B", "LM", "GN", "als"])
def test_full_batch_trainers_lower_the_loss_and_write_the_etn(objective, x0, method, tmp_path):
    run = train_full_batch(objective, x0, method, max_iter=12, progress=None, log_every=0,
                           checkpoint=tmp_path / "checkpoint.npz")
    assert isinstance(run.mtp, ETN) and run.result.fun < 0.8 * objective.fun(x0)
    saved = ETN.read(tmp_path / "checkpoint.etn.json")
    assert np.array_equal(saved.theta, run.result.x) and saved.hyperparameters == objective.model.hyperparameters


@pytest.mark.parametrize("name", ["adam", "muon", "soap"])
def test_minibatch_optimizers_run_on_the_etn_blocks(objective, x0, name, tmp_path):
    result = train_minibatch(objective, make_optimizer(name, lr=1e-3), x0, epochs=3, batch_size=4, progress=None,
                             checkpoint=tmp_path / "mb.npz")
    assert np.isfinite(result.fun) and result.fun < objective.fun(x0)
    assert np.array_equal(ETN.read(tmp_path / "mb.etn.json").theta, result.x)


# -- ALS ----------------------------------------------------------------------------------------------------------
def test_each_core_solve_is_the_minimiser_in_that_core(objective, x0):
    x = x0
    for k in (1, 2, 3, 2, 1):
        before = objective.jac(x)[_block(objective, k)]
        solved = solve_core(objective, x, k)
        assert solved.accepted and solved.loss_after <= solved.loss_before
        after = objective.jac(solved.x)[_block(objective, k)]
        assert np.linalg.norm(after) < 1e-6 * np.linalg.norm(before)
        # only ξ and core k moved
        moved = np.flatnonzero(solved.x != x)
        assert set(moved) <= set(_block(objective, k))
        assert objective.fun(solved.x) == pytest.approx(solved.loss_after, rel=1e-12)
        x = solved.x


def test_als_budget_is_checked_between_core_solves(objective, x0):
    """A budget spent after the first core solve ends the sweep there: no further JᵀWJ build, no radial step."""
    builds = objective.n_gauss_newton
    result = als(objective, x0, sweeps=4, time_limit=1e-9)
    assert result.nit == 1 and result.message == "wall-time budget of 1e-09 s reached" and not result.success
    (row,) = result.history
    assert row["cores_solved"] == 1 and not row["radial_accepted"]
    assert objective.n_gauss_newton - builds == 1
    assert result.fun <= objective.fun(x0)


def test_als_never_raises_the_loss_and_beats_bfgs_per_pass(objective, x0):
    result = als(objective, x0, sweeps=4)
    losses = [objective.fun(x0)] + [row["loss"] for row in result.history]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert all(row["loss_after_cores"] <= a for a, row in zip(losses, result.history))
    # BFGS gets as many loss+gradient passes as ALS made passes of any kind (a JᵀWJ build counted as one; on
    # this set one costs about a loss+gradient pass): its best loss among them is still above ALS's
    passes = result.nfev + result.njev
    seen = []

    def logged(x):
        value, grad = objective.fun_and_jac(x)
        seen.append(value)
        return value, grad

    minimize(logged, x0, jac=True, method="BFGS", options={"maxiter": passes})
    assert len(seen) >= passes and result.fun < min(seen[:passes])


def test_als_resumes_on_the_uninterrupted_trajectory(objective, x0, tmp_path):
    whole = train_full_batch(objective, x0, "als", max_iter=4, progress=None, log_every=0)
    file = tmp_path / "als.npz"
    train_full_batch(objective, x0, "als", max_iter=2, progress=None, log_every=0, checkpoint=file)
    resumed = train_full_batch(objective, x0, "als", max_iter=4, progress=None, log_every=0, checkpoint=file)
    assert np.array_equal(resumed.result.x, whole.result.x)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]


def test_als_refuses_an_mtp(data):
    mtp = mtpfit.MTP.from_level(6, species=problem.SPECIES, min_dist=1.5, max_dist=4.0)
    with pytest.raises(TypeError, match="varpro"):
        als(mtpfit.Objective(mtp, data), mtp.theta, sweeps=1)


# -- ASE calculator -----------------------------------------------------------------------------------------------
def test_calculator_matches_evaluate_and_finite_differences(tmp_path):
    etn = problem.teacher()
    config = problem.configurations(1, n_atoms=6, seed=4)[0]
    path = tmp_path / "trained.etn.json"
    etn.write(path)
    assert isinstance(read_potential(path), ETN)
    atoms = Atoms(symbols=list(config.species), positions=config.positions, cell=config.cell, pbc=True)
    atoms.calc = mtpfit.PotentialCalculator(path)
    p = etn.evaluate(config)
    assert atoms.get_potential_energy() == pytest.approx(p.energy, rel=1e-13)
    np.testing.assert_allclose(atoms.get_forces(), p.forces, rtol=1e-12, atol=1e-13)
    voigt = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])
    np.testing.assert_allclose(atoms.get_stress(), (-p.plus_stress / config.volume)[voigt], rtol=1e-12, atol=1e-14)
    numerical = calculate_numerical_forces(atoms, eps=1e-5)
    assert np.max(np.abs(atoms.get_forces() - numerical)) < 1e-6 * np.max(np.abs(numerical))
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.max(np.abs(atoms.get_stress() - numerical)) < 1e-6 * np.max(np.abs(numerical))
    # atoms are typed by element symbol, not by order
    order = np.arange(len(atoms))[::-1]
    swapped = atoms[order]
    swapped.calc = mtpfit.MTPCalculator(etn)
    assert swapped.get_potential_energy() == pytest.approx(p.energy, rel=1e-12)
    np.testing.assert_allclose(swapped.get_forces(), p.forces[order], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="MTP"):
        mtpfit.MTPCalculator(etn, active_set="any.als.npz")


# -- Fisher and Hessian analyses ----------------------------------------------------------------------------------
def test_fisher_information_is_twice_jtwj_from_the_jacobian_rows(objective, x0):
    fisher = analyse_fisher(objective, x0)
    J = np.vstack([objective.training_set.residual_jacobian(objective.model.core, x0, k)[2]
                   * np.sqrt(objective.training_set.residual_jacobian(objective.model.core, x0, k)[1])[:, None]
                   for k in range(len(objective.dataset))])
    np.testing.assert_allclose(fisher.fisher, 2.0 * J.T @ J, rtol=1e-9, atol=1e-12 * np.abs(fisher.fisher).max())
    assert list(fisher.blocks) == ["radial", "species", "core_1", "core_2", "core_3"]
    assert sum(fisher.block_trace_fraction().values()) == pytest.approx(1.0)
    assert np.isfinite(fisher.summary()["effective_parameters"])
    with pytest.raises(ValueError, match="moment"):
        fisher.basis_function_sensitivity()


def test_hessian_extremes_match_the_dense_hessian(objective, x0):
    spectrum = hessian_spectrum(objective, x0, extreme_steps=objective.n_params, probes=1, steps=10)
    dense = np.array([objective.hessp(x0, e) for e in np.eye(objective.n_params)])
    eigenvalues = np.linalg.eigvalsh(0.5 * (dense + dense.T))
    # both from forward-difference products (relative error ~1e-6 here)
    assert spectrum.largest[0] == pytest.approx(eigenvalues[-1], rel=1e-5)
    assert spectrum.smallest[0] == pytest.approx(eigenvalues[0], abs=1e-5 * eigenvalues[-1])
