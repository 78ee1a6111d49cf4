"""The one-pass linear least-squares system of the species and moment coefficients and the variable-projection
(reduced) loss built on it (issue 13, acceptance 1): the core's R factor equals the column-by-column construction,
the reduced gradient matches central differences of the reduced loss, and thread counts agree."""
import dataclasses

import numpy as np
import pytest

from conftest import DATA
from linear_oracle import weighted_gram
from mtpfit import MTP, Dataset, Loss, Objective
from mtpfit.io import read_cfg, read_configurations
from mtpfit.optim.linear import ReducedLoss, linear_resolve, solve_linear


def _frames():
    return Dataset(read_cfg(DATA / "mlip2" / "level08_multi" / "train100.cfg")[:6], "crystals_multi")


def _with_holes(data: Dataset) -> Dataset:
    """Missing energy, stress and forces on three configurations."""
    configs = list(data)
    configs[0] = dataclasses.replace(configs[0], energy=None)
    configs[1] = dataclasses.replace(configs[1], plus_stress=None)
    configs[2] = dataclasses.replace(configs[2], forces=None)
    return Dataset(configs, data.name)


def _case(species: int, level: int, holes: bool, loss: Loss):
    if species == 3:
        data, mtp = _frames(), MTP.from_level(level, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    else:
        data = read_configurations(DATA / "io" / "Mo_mlearn_3.json")
        mtp = MTP.from_level(level, species=data.species(), min_dist=2.0, max_dist=5.2)
    if holes:
        data = _with_holes(data)
    return Objective(mtp, data, loss, n_threads=2), mtp.init_params(0.1, 7)


LOSSES = {"mlip": Loss(), "forces masked": Loss(force_fraction=0.5, force_seed=2),
          "energy only": Loss(forces=0.0, stress=0.0), "stress heavy": Loss(stress=1.0)}


@pytest.mark.parametrize("level", [6, 10, 16])
@pytest.mark.parametrize("species", [1, 3])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_linear_system_equals_the_column_by_column_construction(level, species, loss):
    """RᵀR = [A | y]ᵀW[A | y] entry by entry, relative to √(G_ii G_jj), against one energy+forces pass per column."""
    objective, x = _case(species, level, holes=loss == "mlip", loss=LOSSES[loss])
    R = objective.linear_system(x)
    n = objective.mtp.basis.species_count + len(objective.mtp.basis.alpha_moment_mapping) + 1
    assert R.shape == (n, n)
    np.testing.assert_array_equal(np.tril(R, -1), 0.0)
    G = weighted_gram(objective, x)
    scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
    used = scale > 0
    assert np.max(np.abs(R.T @ R - G)[used] / scale[used]) < 1e-10
    # columns the data never see (a species absent from the data) are exactly zero in both
    np.testing.assert_array_equal((R.T @ R)[~used], 0.0)


@pytest.mark.parametrize("directions", ["neighbours", "atoms"])
@pytest.mark.parametrize("level", [6, 16])
@pytest.mark.parametrize("species", [1, 3])
@pytest.mark.parametrize("loss", ["mlip", "stress heavy"])
def test_both_tangent_directions_give_the_column_by_column_system(directions, level, species, loss):
    """The forward-mode pass along the neighbours' displacements and along the distinct atoms' displacements and the
    six strains (the cheaper in small periodic cells, chosen automatically at high levels) build the same system:
    forces from the translation invariance, the virial from the strains."""
    objective, x = _case(species, level, holes=loss == "mlip", loss=LOSSES[loss])
    R = objective.training_set.linear_system(objective.mtp.basis.core, x, 2, directions=directions)
    G = weighted_gram(objective, x)
    scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
    used = scale > 0
    assert np.max(np.abs(R.T @ R - G)[used] / scale[used]) < 1e-10
    with pytest.raises(ValueError, match="directions"):
        objective.training_set.linear_system(objective.mtp.basis.core, x, 2, directions="images")


def test_the_data_loss_comes_with_the_solve():
    """‖R₁₁θ − R₁ₙ‖² + R_nn² is the data part of the loss at θ; at the solution, the loss minus the penalty."""
    objective, x = _case(3, 10, holes=True, loss=Loss())
    resolved = linear_resolve(objective, x)
    R = objective.linear_system(x)
    lin = slice(objective.mtp.blocks["species"].start, objective.n_params)
    solution = solve_linear(R, x[lin], n_species=3)
    np.testing.assert_allclose(solution.coefficients, resolved[lin], rtol=1e-12, atol=1e-12 * np.abs(resolved).max())
    penalty = objective.penalty_coefficient * objective.mtp.penalty(resolved)[0]
    assert solution.data_loss + penalty == pytest.approx(objective.fun(resolved), rel=1e-11)


@pytest.mark.parametrize("level", [10, 16])
def test_one_and_two_threads_give_the_same_solution(level):
    data = _frames()
    mtp = MTP.from_level(level, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    x = mtp.init_params(0.1, 5)
    one = linear_resolve(Objective(mtp, data, Loss(), n_threads=1), x)
    two = linear_resolve(Objective(mtp, data, Loss(), n_threads=2), x)
    assert np.linalg.norm(one - two) / np.linalg.norm(one) < 1e-12
    again = linear_resolve(Objective(mtp, data, Loss(), n_threads=2), x)
    np.testing.assert_array_equal(two, again)      # deterministic for a given thread count


@pytest.mark.parametrize("level,species", [(6, 3), (10, 3), (10, 1)])
def test_reduced_gradient_matches_central_differences(level, species):
    """∇L̃(u) = σ ∂L/∂r at the re-solved θ against (L̃(u + hv) − L̃(u − hv)) / 2h along random directions."""
    objective, x = _case(species, level, holes=False, loss=Loss())
    objective.penalty_coefficient = 1e-3          # large enough that the penalty's gradient matters
    reduced = ReducedLoss(objective, x, sigma=0.7)
    u = x[objective.mtp.blocks["radial"]] / 0.7
    g = reduced.jac(u)
    rng = np.random.default_rng(1)
    for _ in range(4):
        v = rng.standard_normal(len(u))
        v /= np.linalg.norm(v)
        h = 1e-4 * np.linalg.norm(u)
        fd = (reduced.fun(u + h * v) - reduced.fun(u - h * v)) / (2 * h)
        assert g @ v == pytest.approx(fd, rel=1e-6, abs=1e-9 * np.linalg.norm(g))
    # the reduced value is the full loss at the re-solved θ (from the R factor: round-off of the label scale,
    # eV per configuration, against the residuals)
    assert reduced.fun(u) == pytest.approx(objective.fun(reduced.theta(u)), rel=1e-9)


def test_ridge_solves_the_regularised_problem():
    """With λ > 0 the moment coefficients satisfy ∂/∂c [Σ w r² + λ‖c‖²] = 0, the species ones ∂/∂ξ Σ w r² = 0."""
    objective, x = _case(3, 10, holes=False, loss=Loss(penalty=False))
    lam = 1e-4
    theta = linear_resolve(objective, x, ridge=lam)
    grad = objective.jac(theta)
    moment, species = objective.mtp.blocks["moment"], objective.mtp.blocks["species"]
    scale = np.linalg.norm(objective.jac(x)[species.start:])
    assert np.linalg.norm(grad[moment] + 2 * lam * theta[moment]) < 1e-8 * scale
    assert np.linalg.norm(grad[species]) < 1e-8 * scale
    plain = linear_resolve(objective, x)
    assert np.linalg.norm(theta[moment]) < np.linalg.norm(plain[moment])


def test_linear_system_memory_does_not_grow_with_the_residuals():
    """Twice the configurations give an R factor of the same shape (the design is never stored)."""
    mtp = MTP.from_level(6, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    small = Objective(mtp, _frames(), Loss(average=False), n_threads=1)
    big = Objective(mtp, _frames() + _frames(), Loss(average=False), n_threads=1)
    x = mtp.init_params(0.1, 3)
    Rs, Rb = small.linear_system(x), big.linear_system(x)
    assert Rs.shape == Rb.shape
    # the same rows twice: the Gram matrix doubles
    np.testing.assert_allclose(Rb.T @ Rb, 2 * (Rs.T @ Rs), rtol=1e-10, atol=1e-12 * np.abs(Rs.T @ Rs).max())
