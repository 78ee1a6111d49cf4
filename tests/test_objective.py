"""The scipy bridge (Objective) and the loss formulas (python/mtpfit/objective/loss.py).

Expected losses are recomputed here in numpy from ``Objective.predict(x)`` and the labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

import mtpfit

try:
    from mtpfit.io import read_cfg
except ImportError:  # the package's io/__init__ may not re-export it yet
    from mtpfit.io.cfg import read_cfg

DATA = Path(__file__).parent / "data" / "mlip2" / "level08_multi"
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


@pytest.fixture(scope="module")
def frames() -> list[mtpfit.Configuration]:
    return read_cfg(DATA / "ref10.cfg")


@pytest.fixture(scope="module")
def trained() -> mtpfit.MTP:
    return mtpfit.MTP.read(DATA / "pot.mtp")


def _untrained() -> mtpfit.MTP:
    return mtpfit.MTP.from_level(8, species=[0, 1, 2], min_dist=2, max_dist=5)


def _relabelled(config, **changes) -> mtpfit.Configuration:
    fields = dict(positions=config.positions, species=config.species, cell=config.cell, pbc=config.pbc,
                  energy=config.energy, forces=config.forces, plus_stress=config.plus_stress,
                  force_mask=config.force_mask, weights=config.weights, source=config.source)
    fields.update(changes)
    return mtpfit.Configuration(**fields)


def _penalty(mtp: mtpfit.MTP, theta: np.ndarray) -> float:
    """MTP_SPEC §6, written out with loops: P = Σ_μ (‖c_μ‖² − 1)² + Σ_{μ<ν} (c_μ·c_ν)²."""
    b = mtp.basis
    s2, k, r = b.species_count ** 2, b.radial_funcs_count, b.radial_basis_size
    radial = theta[:s2 * k * r]
    c = [np.array([radial[(pair * k + mu) * r + beta] for pair in range(s2) for beta in range(r)])
         for mu in range(k)]
    value = sum((c[mu] @ c[mu] - 1.0) ** 2 for mu in range(k))
    value += sum((c[mu] @ c[nu]) ** 2 for mu in range(k) for nu in range(mu + 1, k))
    return float(value)


# -- caching and scipy ----------------------------------------------------------------------------
def test_fun_then_jac_share_one_pass(frames, trained):
    objective = mtpfit.Objective(trained, mtpfit.Dataset(frames[:3]))
    x = trained.theta.copy()
    assert objective.n_evaluations == 0
    value = objective.fun(x)
    assert objective.n_evaluations == 1
    gradient = objective.jac(x.copy())           # same point, another array: no second pass
    assert objective.n_evaluations == 1
    assert objective.fun(x) == value
    assert (objective.n_evaluations, objective.n_fun, objective.n_jac) == (1, 2, 1)
    gradient[:] = 0.0                             # jac returns a copy, the cache is untouched
    assert np.any(objective.jac(x) != 0.0)

    y = x.copy()
    y[0] += 1e-3
    gradient_y = objective.jac(y)                 # a new point: exactly one new pass
    assert objective.n_evaluations == 2
    assert objective.fun(y) != value
    assert objective.n_evaluations == 2
    assert not np.array_equal(gradient_y, objective.jac(x))
    assert objective.n_evaluations == 3
    # fun_and_jac agrees with the separate calls
    both = mtpfit.Objective(trained, mtpfit.Dataset(frames[:3])).fun_and_jac(y)
    assert both[0] == objective.fun(y)
    np.testing.assert_array_equal(both[1], gradient_y)


def test_scipy_bfgs_decreases_the_loss(frames):
    mtp = _untrained()
    dataset = mtpfit.Dataset(frames[:4])
    x0 = mtp.theta.copy()
    initial = mtpfit.Objective(mtp, dataset).fun(x0)
    objective = mtpfit.Objective(mtp, dataset)
    result = minimize(objective.fun, x0, jac=objective.jac, method="BFGS", options={"maxiter": 15})
    assert np.isfinite(result.fun)
    assert result.fun < 0.5 * initial
    assert result.nit >= 1
    # scipy asks for the gradient at every point where it evaluates the loss, right after the
    # loss, so one pass serves both: one pass per distinct point
    assert objective.n_evaluations == result.nfev
    assert result.njev == result.nfev
    assert objective.fun(result.x) == result.fun
    np.testing.assert_array_equal(mtp.theta, x0)  # the potential's θ is not changed


# -- loss formulas --------------------------------------------------------------------------------
def test_file_weights_and_force_masks(frames, trained):
    """kind="file": a_k = w_E·e_k, b_kia = w_F·f_kia·mask_ki, and the Voigt stress weights s_kv on
    the PlusStress residual components (xx yy zz yz xz xy), averaged over K, plus 1e-9·P."""
    rng = np.random.default_rng(5)
    configs = []
    for n, config in enumerate(frames[:4]):
        mask = rng.random(config.n_atoms) < 0.6
        weights = {"energy": rng.uniform(0.5, 2.0), "forces": rng.uniform(0.0, 2.0, (config.n_atoms, 3)),
                   "stress": rng.uniform(0.0, 2.0, 6)}
        configs.append(_relabelled(config, force_mask=mask, weights=weights,
                                   # one frame without a stress label, one without an energy
                                   plus_stress=None if n == 1 else config.plus_stress,
                                   energy=None if n == 2 else config.energy))
    dataset = mtpfit.Dataset(configs)
    w_e, w_f, w_s = 1.5, 0.02, 0.003
    objective = mtpfit.Objective(trained, dataset, mtpfit.Loss(kind="file", energy=w_e, forces=w_f, stress=w_s))
    x = trained.theta
    p = objective.predict(x)

    terms = []
    for k, c in enumerate(configs):
        term = 0.0
        if c.energy is not None:
            term += w_e * c.weights["energy"] * (p.energies[k] - c.energy) ** 2
        residual = p.forces_of(k) - c.forces
        term += w_f * np.sum(c.weights["forces"] * c.force_mask[:, None] * residual ** 2)
        if c.plus_stress is not None:
            ds = p.stresses[k] - c.plus_stress
            term += w_s * sum(w * ds[a, b] ** 2 for w, (a, b) in zip(c.weights["stress"], VOIGT))
        terms.append(term / len(configs))
    expected = sum(terms) + 1e-9 * _penalty(trained, x)
    assert objective.fun(x) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(objective.per_configuration(x), terms, rtol=1e-12)

    # the mask really removes the masked atoms' terms: their labels do not matter
    scrambled = [_relabelled(c, forces=np.where(c.force_mask[:, None], c.forces, 99.0)) for c in configs]
    same = mtpfit.Objective(trained, mtpfit.Dataset(scrambled),
                            mtpfit.Loss(kind="file", energy=w_e, forces=w_f, stress=w_s))
    assert same.fun(x) == objective.fun(x)
    # and the weights matter: doubling every force weight adds exactly the force terms again
    doubled = [_relabelled(c, weights={**c.weights, "forces": 2 * c.weights["forces"]}) for c in configs]
    force_part = sum(w_f * np.sum(c.weights["forces"] * c.force_mask[:, None] * (p.forces_of(k) - c.forces) ** 2)
                     for k, c in enumerate(configs)) / len(configs)
    assert force_part > 1e-3 * expected
    assert mtpfit.Objective(trained, mtpfit.Dataset(doubled), mtpfit.Loss(
        kind="file", energy=w_e, forces=w_f, stress=w_s)).fun(x) == pytest.approx(expected + force_part, rel=1e-12)


def test_file_loss_needs_weights(frames, trained):
    with pytest.raises(ValueError, match="weights"):
        mtpfit.Objective(trained, mtpfit.Dataset(frames[:1]), mtpfit.Loss(kind="file"))


def test_mlip_loss_with_force_mask(frames, trained):
    """The default loss: (1/K) Σ_k [w_E ΔE²/N + w_F Σ_masked |ΔF|² + w_S ‖ΔS‖²_F/N] + 1e-9·P."""
    rng = np.random.default_rng(6)
    configs = [_relabelled(c, force_mask=rng.random(c.n_atoms) < 0.5) for c in frames[:3]]
    objective = mtpfit.Objective(trained, mtpfit.Dataset(configs))
    x = trained.theta
    p = objective.predict(x)
    expected = 0.0
    for k, c in enumerate(configs):
        n = c.n_atoms
        expected += (1.0 * (p.energies[k] - c.energy) ** 2 / n
                     + 0.01 * np.sum(((p.forces_of(k) - c.forces)[c.force_mask]) ** 2)
                     + 0.001 * np.sum((p.stresses[k] - c.plus_stress) ** 2) / n)
    expected = expected / len(configs) + 1e-9 * _penalty(trained, x)
    assert objective.fun(x) == pytest.approx(expected, rel=1e-12)
    unmasked = mtpfit.Objective(trained, mtpfit.Dataset(frames[:3])).fun(x)
    assert unmasked > objective.fun(x) * (1 + 1e-6)


def test_study_loss(frames, trained):
    """Loss.study(): w_E Σ_k ΔE_k² + w_F Σ_k Σ_i |ΔF_ki|², no stress, no averaging, no penalty."""
    w_e, w_f = 2.0, 0.05
    dataset = mtpfit.Dataset(frames[:4])
    x = trained.theta.copy()
    x[trained.blocks["radial"]] *= 1.01      # off the orthonormal optimum, so P(x) ≠ 0
    objective = mtpfit.Objective(trained, dataset, mtpfit.Loss.study(energy=w_e, forces=w_f))
    p = objective.predict(x)
    expected = (w_e * np.sum((p.energies - np.array([c.energy for c in dataset])) ** 2)
                + w_f * np.sum((p.forces - np.concatenate([c.forces for c in dataset])) ** 2))
    assert objective.fun(x) == pytest.approx(expected, rel=1e-12)
    # no penalty and no stress term: with zero energy and force weights the loss is exactly 0
    # even where P is large (a 1e-9·P term is below the precision of the comparison above)
    x[trained.blocks["radial"]] = np.random.default_rng(4).uniform(-0.5, 0.5, trained.blocks["radial"].stop)
    assert _penalty(trained, x) > 1.0
    zero = mtpfit.Objective(trained, dataset, mtpfit.Loss.study(energy=0.0, forces=0.0))
    value, gradient = zero.fun_and_jac(x)
    assert value == 0.0
    assert np.all(gradient == 0.0)


@pytest.mark.parametrize("average", [True, False])
def test_penalty_term(frames, average):
    """λ·P with λ = 1e-9 (averaged) or 1e-9·K (summed); the radial block is random so P is large."""
    mtp = _untrained()
    dataset = mtpfit.Dataset(frames[:3])
    x = mtp.theta.copy()
    x[mtp.blocks["radial"]] = np.random.default_rng(3).uniform(-0.5, 0.5, mtp.blocks["radial"].stop)
    p_value = _penalty(mtp, x)
    value, gradient = mtp.penalty(x)
    assert value == pytest.approx(p_value, rel=1e-12)
    # dP/dθ by central differences of the independent numpy P
    h = 1e-6
    fd = np.array([(_penalty(mtp, x + h * e) - _penalty(mtp, x - h * e)) / (2 * h)
                   for e in np.eye(mtp.n_params)[: mtp.blocks["radial"].stop]])
    np.testing.assert_allclose(gradient[mtp.blocks["radial"]], fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())
    assert np.all(gradient[mtp.blocks["radial"].stop:] == 0.0)

    lam = 1e-9 if average else 1e-9 * len(dataset)
    # only the penalty: every residual weight zero
    only = mtpfit.Objective(mtp, dataset, mtpfit.Loss(energy=0, forces=0, stress=0, average=average))
    loss, grad = only.fun_and_jac(x)
    assert loss == pytest.approx(lam * p_value, rel=1e-12)
    np.testing.assert_allclose(grad, lam * gradient, rtol=1e-12, atol=1e-15 * np.abs(lam * gradient).max())
    # with residuals, at the MLIP default θ (tiny radial coefficients, so P ≈ K and the loss is
    # O(1)): switching the penalty on adds λ·P and nothing else
    x = mtp.init_params()
    p_value, gradient = mtp.penalty(x)
    assert p_value == pytest.approx(_penalty(mtp, x), rel=1e-12)
    with_p = mtpfit.Objective(mtp, dataset, mtpfit.Loss(average=average)).fun_and_jac(x)
    without = mtpfit.Objective(mtp, dataset, mtpfit.Loss(average=average, penalty=False)).fun_and_jac(x)
    assert without[0] < 1e3
    assert with_p[0] - without[0] == pytest.approx(lam * p_value, rel=1e-5)
    np.testing.assert_allclose(with_p[1] - without[1], lam * gradient, rtol=1e-5,
                               atol=1e-14 * np.abs(with_p[1]).max())


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_theta_raises(frames, trained, bad):
    objective = mtpfit.Objective(trained, mtpfit.Dataset(frames[:2]))
    x = trained.theta.copy()
    x[trained.n_params // 2] = bad
    with pytest.raises(ValueError):
        objective.fun(x)
    with pytest.raises(ValueError):
        objective.jac(x)
    with pytest.raises(ValueError):
        trained.evaluate(frames[0], x)
    with pytest.raises(ValueError):
        trained.copy(x)
    assert objective.n_evaluations == 0


def test_unknown_species_names_the_source(frames, trained):
    source = "somewhere/odd.cfg, configuration 7 (line 99)"
    species = frames[0].species.copy()
    species[3] = 5
    bad = _relabelled(frames[0], species=species, source=source)
    with pytest.raises(ValueError, match="odd.cfg, configuration 7") as info:
        mtpfit.Objective(trained, mtpfit.Dataset([frames[1], bad]))
    assert "5" in str(info.value)
    with pytest.raises(ValueError, match="odd.cfg, configuration 7"):
        trained.evaluate(bad)


@pytest.mark.parametrize("periodic", [False, True], ids=["direct", "through-image"])
def test_overlapping_atoms_name_the_configuration(trained, periodic):
    source = "close.cfg, configuration 2 (line 17)"
    cell = np.eye(3) * 6.0
    if periodic:   # 0.05 Å apart only through the periodic boundary
        positions = [[0.02, 1.0, 1.0], [5.97, 1.0, 1.0], [3.0, 3.0, 3.0]]
    else:
        positions = [[1.0, 1.0, 1.0], [1.05, 1.0, 1.0], [3.0, 3.0, 3.0]]
    config = mtpfit.Configuration(positions, [0, 1, 2], cell, energy=1.0, forces=np.zeros((3, 3)),
                                  source=source)
    with pytest.raises(ValueError, match="close.cfg, configuration 2"):
        mtpfit.Objective(trained, mtpfit.Dataset([config]))
    with pytest.raises(ValueError, match="close.cfg, configuration 2"):
        trained.evaluate(config)
    # just above the 0.1 Å threshold is accepted
    ok = np.array(positions)
    ok[1, 0] = ok[0, 0] + 0.12 if not periodic else 6.0 + ok[0, 0] - 0.12
    assert np.isfinite(trained.evaluate(mtpfit.Configuration(ok, [0, 1, 2], cell)).energy)


def test_partial_force_supervision_normalises_over_labelled_components():
    """Harari et al. 2026: a seeded fraction keeps force labels; the force term is averaged over those only."""
    from mtpfit.io import read_cfg

    data = mtpfit.Dataset(read_cfg(DATA / "train100.cfg")[:12])
    mtp = mtpfit.MTP.from_level(6, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    x = mtp.init_params(interval=0.05, seed=1)
    forces_only = dict(energy=0.0, stress=0.0, forces=0.01, penalty=False)
    pred = mtpfit.Objective(mtp, data, mtpfit.Loss(**forces_only)).predict(x)
    per_config = np.array([np.sum((pred.forces_of(k) - c.forces) ** 2) for k, c in enumerate(data)])
    loss = mtpfit.Loss(**forces_only, force_fraction=0.5, force_seed=4)
    keep = loss.force_labelled(len(data))
    assert keep.sum() == 6 and np.array_equal(keep, mtpfit.Loss(force_fraction=0.5, force_seed=4).force_labelled(12))
    expected = 0.01 / len(data) * per_config[keep].sum() * len(data) / keep.sum()  # all atoms: 27 per cfg
    assert mtpfit.Objective(mtp, data, loss).fun(x) == pytest.approx(expected, rel=1e-12)
    energy_only = mtpfit.Loss(force_fraction=0.0, penalty=False)
    full = mtpfit.Loss(forces=0.0, penalty=False)
    assert mtpfit.Objective(mtp, data, energy_only).fun(x) == pytest.approx(mtpfit.Objective(mtp, data, full).fun(x),
                                                                            rel=1e-12)


def test_hessp_matches_central_differences_of_the_gradient():
    from mtpfit.io import read_cfg

    data = mtpfit.Dataset(read_cfg(DATA / "train100.cfg")[:10])
    mtp = mtpfit.MTP.from_level(6, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    obj = mtpfit.Objective(mtp, data)
    x = mtp.init_params(interval=0.05, seed=2)
    p = np.random.default_rng(0).normal(size=mtp.n_params)
    h = 1e-4
    central = (obj.jac(x + h * p) - obj.jac(x - h * p)) / (2 * h)
    assert np.linalg.norm(obj.hessp(x, p) - central) < 1e-4 * np.linalg.norm(central)
    before = obj.n_evaluations
    obj.hessp(x, p[::-1])  # ∇L(x) is kept: one pass per further product
    assert obj.n_evaluations == before + 1
