"""Relaxation with the MTP and fine-tuning through unrolled relaxations (issue 7).

Acceptance 1: the gradient of the unrolled loss matches central finite differences in θ (relative error < 1e-5)
for k = 1, 5 and 20, for gradient descent and FIRE. The potential is MLIP-2's level-08 Au/Ag/Cu fit (MIT data);
the "DFT minima" are minima of that potential, so fine-tuning a perturbed copy has a known answer.
"""
import functools

import numpy as np
import pytest
from ase.build import bulk
from ase.optimize import FIRE as AseFIRE

from conftest import DATA
from mtpfit import Configuration, Dataset, MTP, MTPCalculator
from mtpfit.cli import main
from mtpfit.relax import (FIRE, GradientDescent, RelaxationObjective, dft_minima, displaced_starts,
                          displacement_rmsd, finetune_relax, relax, unrolled_relaxation)
from mtpfit.relax.dynamics import capped_step

POT = DATA / "mlip2" / "level08_multi" / "pot.mtp"
SPECIES = ["Au", "Ag", "Cu"]


def _rattled(seed=0, amplitude=0.08) -> Configuration:
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(seed)
    atoms.set_chemical_symbols(rng.choice(SPECIES, len(atoms)))
    atoms.rattle(amplitude, seed=seed)
    return Configuration(atoms.positions, np.array(atoms.get_chemical_symbols()), atoms.cell.array, atoms.pbc,
                         source=f"rattled fcc {seed}")


@functools.lru_cache(maxsize=None)
def _potential() -> MTP:
    return MTP.read(POT, species=SPECIES)


@functools.lru_cache(maxsize=None)
def _minimum(seed: int) -> Configuration:
    """A minimum of the reference potential, labelled by it (forces ≈ 0)."""
    mtp = _potential()
    config = _rattled(seed)
    run = relax(mtp, config, FIRE(), steps=3000, fmax=1e-5)
    assert run.converged
    p = mtp.evaluate(Configuration(run.positions, config.species, config.cell, config.pbc))
    return Configuration(run.positions, config.species, config.cell, config.pbc, energy=p.energy, forces=p.forces,
                         plus_stress=p.plus_stress, source=f"minimum {seed}")


def _perturbed(mtp: MTP, scale=0.03, seed=5) -> MTP:
    theta = mtp.theta.copy()
    theta[mtp.blocks["radial"]] *= 1 + scale * np.random.default_rng(seed).normal(size=mtp.blocks["radial"].stop)
    return mtp.copy(theta)


def test_capped_step_limits_every_atom_and_its_vjp_matches_differences():
    u = np.random.default_rng(0).normal(size=(5, 3))
    step, s, m = capped_step(u, 0.5)
    assert np.linalg.norm(step, axis=1).max() == pytest.approx(0.5) and s < 1
    assert capped_step(u, 10.0)[1] == 1.0
    rule = GradientDescent(eta=0.3, max_step=0.5)
    cot = np.random.default_rng(1).normal(size=u.shape)
    _, record = rule.step({"X": np.zeros_like(u)}, u)
    _, f_bar = rule.vjp(record, {"X": cot})
    d = np.random.default_rng(2).normal(size=u.shape)
    h = 1e-6
    fd = (np.sum(cot * rule.step({"X": 0 * u}, u + h * d)[0]["X"])
          - np.sum(cot * rule.step({"X": 0 * u}, u - h * d)[0]["X"])) / (2 * h)
    assert np.sum(f_bar * d) == pytest.approx(fd, rel=1e-7)


def test_fire_follows_ase_when_the_cap_does_not_act():
    """Same rule as ase.optimize.FIRE (unit masses, first step Euler) whenever no step reaches the cap."""
    mtp, config = _potential(), _rattled(3)
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((2, 2, 2))
    atoms.set_chemical_symbols(config.species)
    atoms.positions = config.positions
    atoms.calc = MTPCalculator(POT, species=SPECIES)
    opt = AseFIRE(atoms, maxstep=10.0, logfile=None)
    opt.run(fmax=0.0, steps=25)
    ours = relax(mtp, config, FIRE(max_step=10.0), steps=25, fmax=None)
    assert ours.steps == 25
    assert np.max(np.abs(ours.positions - atoms.positions)) < 1e-10


def test_relaxations_reach_the_minimum_and_report_progress():
    mtp, minimum = _potential(), _minimum(0)
    pair = displaced_starts(Dataset([minimum]), amplitude=0.03, seed=1)[0]
    for rule in (GradientDescent(eta=0.01), FIRE()):
        run = relax(mtp, pair.start, rule, steps=4000, fmax=1e-4)
        assert run.converged and run.fmax[-1] < 1e-4 and len(run.energies) == run.steps + 1
        assert run.energies[-1] < run.energies[0]
        assert displacement_rmsd(run.positions, minimum)[0] < 1e-3


def test_displacement_rmsd_ignores_translations_and_periodic_images():
    minimum = _minimum(0)
    shifted = minimum.positions + np.array([0.3, -0.2, 0.1])
    assert displacement_rmsd(shifted, minimum)[0] == pytest.approx(0.0, abs=1e-12)
    wrapped = minimum.positions.copy()
    wrapped[0] += minimum.cell[1]  # the same structure, one atom written in a neighbouring cell
    assert displacement_rmsd(wrapped, minimum)[0] == pytest.approx(0.0, abs=1e-12)
    X = minimum.positions + np.random.default_rng(0).normal(scale=0.05, size=minimum.positions.shape)
    D, grad = displacement_rmsd(X, minimum)
    d = np.random.default_rng(1).normal(size=X.shape)
    h = 1e-6
    fd = (displacement_rmsd(X + h * d, minimum)[0] - displacement_rmsd(X - h * d, minimum)[0]) / (2 * h)
    assert np.sum(grad * d) == pytest.approx(fd, rel=1e-7)
    # mass weighting: displacing a gold atom costs more than displacing a copper atom by the same amount
    gold, copper = (int(np.flatnonzero(minimum.species == s)[0]) for s in ("Au", "Cu"))
    moved = {}
    for atom in (gold, copper):
        Y = minimum.positions.copy()
        Y[atom, 0] += 0.1
        moved[atom] = displacement_rmsd(Y, minimum)[0]
    assert moved[gold] > 1.5 * moved[copper]


def test_minima_and_starts_are_selected_and_seeded():
    minimum, rattled = _minimum(0), _rattled(4)
    labelled = Configuration(rattled.positions, rattled.species, rattled.cell, rattled.pbc, energy=0.0,
                             forces=_potential().evaluate(rattled).forces, source="rattled")
    assert list(dft_minima(Dataset([labelled, minimum]))) == [minimum]
    with pytest.raises(ValueError, match="no configuration"):
        dft_minima(Dataset([labelled]))
    pairs = displaced_starts(Dataset([minimum, minimum]), amplitude=0.05, n_starts=3, seed=2)
    assert len(pairs) == 6
    again = displaced_starts(Dataset([minimum]), amplitude=0.05, n_starts=2, seed=2)
    assert np.array_equal(again[1].start.positions, pairs[1].start.positions)
    from mtpfit.relax import atomic_mass
    m = atomic_mass(minimum)
    for pair in pairs:
        shift = pair.start.positions - minimum.positions
        assert np.allclose(m @ shift, 0.0, atol=1e-12)
        assert 0.03 < np.sqrt(np.mean(np.sum(shift ** 2, axis=1))) < 0.13


def _fourth_order(f, h):
    return (f(-2 * h) - 8 * f(-h) + 8 * f(h) - f(2 * h)) / (12 * h)


@pytest.mark.parametrize("rule", [GradientDescent(eta=0.01, max_step=0.05), FIRE(dt=0.1, max_step=0.05)],
                         ids=["gd", "fire"])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_unrolled_gradient_matches_central_differences(rule, k):
    """Acceptance 1: directional derivatives along three random directions (scaled by |θ|) and the whole-block
    directions, against the fourth-order central stencil; relative error < 1e-5."""
    mtp, minimum = _potential(), _minimum(0)
    pair = displaced_starts(Dataset([minimum]), amplitude=0.05, seed=0)[0]
    theta = _perturbed(mtp).theta
    D, grad, _ = unrolled_relaxation(mtp, theta, pair.start, minimum, rule, k)
    assert D > 1e-3 and np.linalg.norm(grad) > 0
    rng = np.random.default_rng(k)
    directions = [rng.normal(size=theta.shape) * np.abs(theta) for _ in range(3)]
    for block in ("radial", "moment"):
        d = np.zeros_like(theta)
        d[mtp.blocks[block]] = rng.normal(size=d[mtp.blocks[block]].shape) * np.abs(theta[mtp.blocks[block]])
        directions.append(d)
    for d in directions:
        fd = _fourth_order(lambda h: unrolled_relaxation(mtp, theta + h * d, pair.start, minimum, rule, k,
                                                         gradient=False)[0], 1e-5)
        assert abs(grad @ d - fd) <= 1e-5 * abs(fd), (grad @ d, fd)


def test_fine_tuning_moves_the_minima_back():
    """A perturbed copy of the reference potential relaxes away from the reference minima; fine-tuning through
    unrolled relaxations brings the relaxed structures back closer, mixed loss included."""
    mtp = _potential()
    minima = Dataset([_minimum(0), _minimum(1)])
    pairs = displaced_starts(minima, amplitude=0.04, seed=3)
    perturbed = _perturbed(mtp, scale=0.05)
    rule = GradientDescent(eta=0.02, max_step=0.1)
    objective = RelaxationObjective(perturbed, pairs, rule, k=30, n_threads=1)
    before = objective.relaxation_scale
    result = finetune_relax(objective, "adam", max_iter=15, progress=None, lr=1e-3)
    after = objective.relaxation_error(result.x, gradient=False)[0]
    assert after < 0.7 * before
    assert len(result.history) == 15 and result.history[0]["relaxation_error"] == pytest.approx(before)
    # scipy's BFGS takes the same objective
    result = finetune_relax(objective, "BFGS", max_iter=5, progress=None)
    assert objective.relaxation_error(result.x, gradient=False)[0] < before
    # the mixed objective's gradient is the sum of its parts
    from mtpfit import Loss, Objective
    ef = Objective(perturbed, minima, Loss(), n_threads=1)
    mixed = RelaxationObjective(perturbed, pairs, rule, k=5, energy_force=ef, mix=0.5, n_threads=1)
    value, grad = mixed.fun_and_jac(perturbed.theta)
    assert value == pytest.approx(1.5)
    d = np.random.default_rng(0).normal(size=grad.shape) * np.abs(perturbed.theta)
    fd = _fourth_order(lambda h: mixed.fun_and_jac(perturbed.theta + h * d)[0], 1e-5)
    assert grad @ d == pytest.approx(fd, rel=1e-5)
    with pytest.raises(ValueError, match="mix"):
        RelaxationObjective(perturbed, pairs, rule, k=5, mix=1.0)


def test_finetune_relax_command_writes_its_report(tmp_path):
    from mtpfit.io import write_cfg

    mtp = _potential()
    train = [_minimum(0), _minimum(1)]
    test = [_minimum(2)]
    # a .cfg holds type indices: the written .mtp names the elements of types 0, 1, 2, so no --species is needed
    write_cfg(tmp_path / "train.cfg", train, species_order=SPECIES)
    write_cfg(tmp_path / "test.cfg", test, species_order=SPECIES)
    _perturbed(mtp, scale=0.05).write(tmp_path / "base.mtp")
    out = tmp_path / "out"
    args = ["finetune-relax", "--potential", str(tmp_path / "base.mtp"), "--train", str(tmp_path / "train.cfg"),
            "--test", str(tmp_path / "test.cfg"), "--k", "5", "--eta", "0.02",
            "--max-iter", "3", "--lr", "1e-3", "--test-starts", "2", "--threads", "1", "--output", str(out)]
    assert main(args) == 0
    table = (out / "finetune_relax.csv").read_text().splitlines()
    assert len(table) == 2 and "reduction_percent" in table[0]
    assert (out / "finetune_relax.png").stat().st_size > 1000
    assert MTP.read(out / "finetuned_k005_eta0.02.mtp").n_params == mtp.n_params
    # a rerun reuses the finished (k, η)
    assert main(args) == 0
    assert (out / "finetune_relax.csv").read_text().splitlines() == table


def test_interrupted_fine_tuning_resumes_on_the_same_trajectory(tmp_path):
    mtp = _potential()
    pairs = displaced_starts(Dataset([_minimum(0), _minimum(1)]), amplitude=0.04, seed=3)
    perturbed = _perturbed(mtp, scale=0.05)

    def objective():
        return RelaxationObjective(perturbed, pairs, GradientDescent(eta=0.02, max_step=0.1), k=5, n_threads=1)

    straight = finetune_relax(objective(), "adam", max_iter=6, batch_size=1, progress=None, lr=1e-3)
    path = tmp_path / "run.npz"
    finetune_relax(objective(), "adam", max_iter=4, batch_size=1, checkpoint=path, checkpoint_every=2,
                   progress=None, lr=1e-3)  # "killed" after 4 steps
    resumed = finetune_relax(objective(), "adam", max_iter=6, batch_size=1, checkpoint=path, checkpoint_every=2,
                             progress=None, lr=1e-3)
    assert np.array_equal(resumed.x, straight.x)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
