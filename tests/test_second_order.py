"""Second-order quantities of the loss (Jacobian, JᵀWJ, JᵀWr, Hessian–vector products) against dense
finite-difference constructions, and the Levenberg–Marquardt and Gauss–Newton trainers."""
import dataclasses

import numpy as np
import pytest

from conftest import DATA
from mtpfit.data import Dataset
from mtpfit.io import read_configurations
from mtpfit.objective import Loss, Objective
from mtpfit.optim.least_squares import gauss_newton, levenberg_marquardt
from mtpfit.potential import MTP


@pytest.fixture(scope="module")
def frames():
    return read_configurations(DATA / "mlip2" / "level08_multi" / "train100.cfg")[:5]


@pytest.fixture(scope="module")
def small(frames):
    """Level 06, 3 species, default MLIP loss (with the radial penalty, made large enough to matter)."""
    mtp = MTP.from_level(6, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    objective = Objective(mtp, frames, Loss(), n_threads=1)
    objective.penalty_coefficient = 1e-3
    return objective, mtp.init_params(0.1, 3)


def dense_residual_jacobian(objective, x, h=1e-5):
    """dr/dθ by central differences of :meth:`Objective.residuals`, one column per parameter."""
    columns = []
    for p in range(len(x)):
        e = np.zeros_like(x)
        e[p] = h
        columns.append((objective.residuals(x + e)[0] - objective.residuals(x - e)[0]) / (2 * h))
    return np.array(columns).T


def relative(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_residuals_reproduce_loss_and_gradient(small):
    objective, x = small
    r, w = objective.residuals(x)
    loss, grad = objective.fun_and_jac(x)
    assert np.sum(w * r * r) == pytest.approx(loss, rel=1e-13)
    assert relative(objective.residual_vjp(x, 2 * w * r), grad) < 1e-13


def test_gauss_newton_matches_dense_finite_differences(small):
    objective, x = small
    loss, JtWJ, JtWr = objective.gauss_newton(x)
    r, w = objective.residuals(x)
    J = dense_residual_jacobian(objective, x)
    assert loss == pytest.approx(objective.fun(x), rel=1e-13)
    assert relative(JtWJ, J.T @ (w[:, None] * J)) < 1e-6
    assert relative(JtWr, J.T @ (w * r)) < 1e-6
    assert np.array_equal(JtWJ, JtWJ.T)


def test_per_configuration_jacobian_matches_finite_differences(small):
    objective, x = small
    core, ts = objective.mtp.basis.core, objective.training_set
    k, h = 2, 1e-5
    r, w, J = ts.residual_jacobian(core, x, k)
    assert len(r) == 10 + 3 * len(objective.dataset[k])
    fd = np.empty_like(J)
    for p in range(len(x)):
        e = np.zeros_like(x)
        e[p] = h
        fd[:, p] = (ts.residual_jacobian(core, x + e, k)[0] - ts.residual_jacobian(core, x - e, k)[0]) / (2 * h)
    assert relative(J, fd) < 1e-6


def test_gauss_newton_is_identical_for_any_thread_count(frames):
    mtp = MTP.from_level(6, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    x = mtp.init_params(0.1, 5)
    one = Objective(mtp, frames, Loss(), n_threads=1).gauss_newton(x)
    two = Objective(mtp, frames, Loss(), n_threads=2).gauss_newton(x)
    assert one[0] == two[0] and np.array_equal(one[1], two[1]) and np.array_equal(one[2], two[2])


def test_hessian_vector_product_matches_dense_hessian(small):
    """hessp (forward difference of the analytic gradient) against the Hessian built column by column from
    central differences of the gradient."""
    objective, x = small
    h = 1e-5
    H = np.array([(objective.jac(x + h * e) - objective.jac(x - h * e)) / (2 * h) for e in np.eye(len(x))]).T
    H = 0.5 * (H + H.T)
    v = np.random.default_rng(0).normal(size=len(x))
    assert relative(objective.hessp(x, v), H @ v) < 1e-6
    # the Gauss–Newton matrix is the Hessian without the residual-curvature term: not equal far from a fit
    JtWJ = objective.gauss_newton(x)[1]
    assert relative(2 * JtWJ @ v, H @ v) > 1e-3


@pytest.fixture(scope="module")
def teacher(frames):
    """A zero-residual problem: labels made by a level-06 MTP at θ*, so least squares should drive the loss to
    round-off (Gauss–Newton at a quadratic rate)."""
    mtp = MTP.from_level(6, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    star = mtp.init_params(0.1, 11)
    predictions = Objective(mtp, frames, Loss(penalty=False), n_threads=1).predict(star)
    labelled = Dataset([dataclasses.replace(c, energy=float(predictions.energies[k]),
                                            forces=predictions.forces_of(k),
                                            plus_stress=np.array(predictions.stresses[k]))
                        for k, c in enumerate(frames)])
    objective = Objective(mtp, labelled, Loss(penalty=False), n_threads=1)
    return objective, star


@pytest.mark.parametrize("method, options", [(levenberg_marquardt, {}), (levenberg_marquardt, {"geodesic": True}),
                                             (gauss_newton, {})])
def test_least_squares_fit_a_teacher_exactly(teacher, method, options):
    objective, star = teacher
    x0 = star + 1e-3 * np.abs(star).max() * np.random.default_rng(1).normal(size=len(star))
    start = objective.fun(x0)
    result = method(objective, x0, max_iter=40, **options)
    assert result.fun < 1e-10 * start, result.message
    assert result.nit == len(result.history)
    assert result.fun == pytest.approx(objective.fun(result.x), rel=1e-9, abs=1e-30)


def test_levenberg_marquardt_accepts_only_descent(small):
    objective, x = small
    result = levenberg_marquardt(objective, x, max_iter=15)
    losses = [objective.fun(x)] + [row["loss"] for row in result.history]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert result.fun < 0.1 * losses[0]
    assert result.njev == 1 + sum(row["accepted"] for row in result.history)


def test_time_limit_stops_least_squares(small):
    objective, x = small
    result = levenberg_marquardt(objective, x, max_iter=50, time_limit=0.0)
    assert result.nit == 1 and "wall-time" in result.message


def test_sketched_gauss_newton_is_unbiased_and_keeps_the_gradient_exact(small):
    objective, x = small
    loss, H, g = objective.gauss_newton(x)
    total = np.zeros_like(H)
    n = 200
    for seed in range(n):
        loss_s, H_s, g_s = objective.gauss_newton(x, sketch=3, seed=seed)
        assert loss_s == pytest.approx(loss, rel=1e-13) and relative(g_s, g) < 1e-12
        total += H_s
    single = relative(H_s, H)
    mean = relative(total / n, H)
    # a single sketch is off by O(1/√3), the mean of 200 by O(1/√600): unbiased
    assert single > 0.02 and mean < 0.25 * single and mean < 0.05
    # the same seed gives the same sketch, whatever the thread count
    two = Objective(objective.mtp, objective.dataset, objective.loss, n_threads=2)
    two.penalty_coefficient = objective.penalty_coefficient
    assert np.array_equal(two.gauss_newton(x, sketch=3, seed=7)[1], objective.gauss_newton(x, sketch=3, seed=7)[1])


def test_sketched_levenberg_marquardt_fits_a_teacher(teacher):
    objective, star = teacher
    x0 = star + 1e-3 * np.abs(star).max() * np.random.default_rng(1).normal(size=len(star))
    start = objective.fun(x0)
    result = levenberg_marquardt(objective, x0, max_iter=60, sketch=4)
    # a sketched Gauss–Newton matrix converges linearly (the exact one quadratically): 4 decades here
    assert result.fun < 1e-3 * start, result.message
    losses = [row["loss"] for row in result.history]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
