"""Conformance with the reference code (MLIP-2): levels 08, 10 and 16, three species.

Reads only ``tests/data/mlip2/`` (copies of the reference outputs; see SOURCE.txt there).

Norms used for "relative" below, per frame:
* energy:   |E − E*| / |E*|
* forces:   max_ia |F_ia − F*_ia| / max_ia |F*_ia|
* stress:   max_ab |S_ab − S*_ab| / max_ab |S*_ab|   (3×3 PlusStress, eV)
* dE/dθ:    max_k |g_k − g*_k| / max_k |g*_k|
* loss:     |L − L*| / |L*|;  ∂L/∂θ as dE/dθ.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mtpfit

try:
    from mtpfit.io import read_cfg
except ImportError:  # the package's io/__init__ may not re-export it yet
    from mtpfit.io.cfg import read_cfg

DATA = Path(__file__).parent / "data" / "mlip2"
LEVELS = ("level08_multi", "level10_multi", "level16_multi")
WEIGHTS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 0.01, 0.001))
RTOL_EFS = 1e-9
RTOL_GRADIENT = 1e-8

levels = pytest.mark.parametrize("level", LEVELS)


# -- reference files ----------------------------------------------------------------------------
def _reference_params(level: str) -> tuple[float, np.ndarray]:
    lines = (DATA / level / "ref10_params.txt").read_text().split("\n")
    key, scaling = lines[0].split()
    assert key == "scaling"
    header = lines[1].split()
    n_params = int(header[header.index("n_params") + 1])
    theta = np.array([float(x) for x in lines[2:] if x.strip()])
    assert theta.shape == (n_params,)
    return float(scaling), theta


def _reference_efs(level: str) -> list[dict]:
    frames: list[dict] = []
    for line in (DATA / level / "ref10_efs.txt").read_text().split("\n"):
        words = line.split()
        if not words:
            continue
        if words[0] == "CFG":
            frames.append({"N": int(words[1]), "F": [], "S": []})
        elif words[0] == "E":
            frames[-1]["E"] = float(words[1])
        else:
            frames[-1][words[0]].append([float(x) for x in words[1:]])
    for frame in frames:
        frame["F"] = np.array(frame["F"])
        frame["S"] = np.array(frame["S"])
        assert frame["F"].shape == (frame["N"], 3) and frame["S"].shape == (3, 3)
    return frames


def _reference_egrad(level: str) -> dict[int, np.ndarray]:
    out = {}
    for block in (DATA / level / "ref10_egrad.txt").read_text().split("CFG")[1:]:
        words = block.split()
        out[int(words[0])] = np.array(words[1:], dtype=float)
    return out


def _reference_lossgrad(level: str, weights) -> tuple[float, np.ndarray]:
    name = "ref10_lossgrad_{}_{}_{}.txt".format(*(f"{w:g}" for w in weights))
    words = (DATA / level / name).read_text().split()
    assert words[0] == "K" and int(words[1]) == 10 and words[2] == "loss_sum"
    return float(words[3]), np.array(words[4:], dtype=float)


def _setup(level: str) -> tuple[mtpfit.MTP, mtpfit.Dataset]:
    mtp = mtpfit.MTP.read(DATA / level / "pot.mtp")
    dataset = mtpfit.Dataset(read_cfg(DATA / level / "ref10.cfg"), f"{level}/ref10.cfg")
    assert len(dataset) == 10
    return mtp, dataset


def _max_relative(value, reference) -> float:
    return float(np.max(np.abs(np.asarray(value) - reference)) / np.max(np.abs(reference)))


# -- tests ----------------------------------------------------------------------------------------
@levels
def test_theta_read_from_file_is_exact(level):
    mtp = mtpfit.MTP.read(DATA / level / "pot.mtp")
    scaling, theta = _reference_params(level)
    assert mtp.species == [0, 1, 2]
    assert mtp.basis.scaling == scaling
    assert mtp.n_params == len(theta)
    np.testing.assert_array_equal(mtp.theta, theta)


@levels
def test_energies_forces_stresses(level):
    mtp, dataset = _setup(level)
    frames = _reference_efs(level)
    assert len(frames) == len(dataset)
    batch = mtpfit.Objective(mtp, dataset, n_threads=2).predict(mtp.theta)
    for k, (config, ref) in enumerate(zip(dataset, frames)):
        assert config.n_atoms == ref["N"]
        single = mtp.evaluate(config)
        # one configuration at a time (MTP.evaluate) and the training-set path (Objective.predict)
        for energy, forces, stress in ((single.energy, single.forces, single.plus_stress),
                                       (batch.energies[k], batch.forces_of(k), batch.stresses[k])):
            assert abs(energy - ref["E"]) <= RTOL_EFS * abs(ref["E"]), k
            assert _max_relative(forces, ref["F"]) <= RTOL_EFS, k
            assert _max_relative(stress, ref["S"]) <= RTOL_EFS, k


@levels
def test_energy_gradient(level):
    mtp, dataset = _setup(level)
    reference = _reference_egrad(level)
    assert sorted(reference) == [0, 1, 2, 3, 4]
    batch = mtpfit.Objective(mtp, dataset, n_threads=2).energy_gradients(mtp.theta)
    for k, ref in reference.items():
        assert _max_relative(mtp.energy_gradient(dataset[k]), ref) <= RTOL_GRADIENT, k
        assert _max_relative(batch[k], ref) <= RTOL_GRADIENT, k


@levels
@pytest.mark.parametrize("weights", WEIGHTS, ids=lambda w: "_".join(f"{x:g}" for x in w))
def test_summed_loss_and_gradient(level, weights):
    """The README's loss: MLIP-2's weighting summed (not averaged) over the 10 frames, plus
    10·1e-9·P(θ) — ``Loss(average=False)`` with the penalty on."""
    mtp, dataset = _setup(level)
    ref_loss, ref_gradient = _reference_lossgrad(level, weights)
    w_e, w_f, w_s = weights
    loss = mtpfit.Loss(energy=w_e, forces=w_f, stress=w_s, average=False)
    assert loss.kind == "mlip" and loss.penalty
    value, gradient = mtpfit.Objective(mtp, dataset, loss, n_threads=1).fun_and_jac(mtp.theta)
    assert abs(value - ref_loss) <= RTOL_GRADIENT * abs(ref_loss)
    assert _max_relative(gradient, ref_gradient) <= RTOL_GRADIENT


@levels
def test_thread_determinism(level):
    """Configurations are summed in fixed blocks, so the loss and gradient are bit-identical on
    repeated evaluations with the same thread count, and (by that design) across 1 and 2 threads."""
    mtp, dataset = _setup(level)
    theta = mtp.theta
    other = theta * (1.0 + 1e-6)
    results = {}
    for n_threads in (1, 2):
        objective = mtpfit.Objective(mtp, dataset, mtpfit.Loss(average=False), n_threads=n_threads)
        first = objective.fun_and_jac(theta)
        objective.fun_and_jac(other)            # move the one-point cache away from θ
        second = objective.fun_and_jac(theta)   # so this is a fresh pass
        assert objective.n_evaluations == 3
        fresh = mtpfit.Objective(mtp, dataset, mtpfit.Loss(average=False), n_threads=n_threads).fun_and_jac(theta)
        for value, gradient in (second, fresh):
            assert value == first[0]
            np.testing.assert_array_equal(gradient, first[1])
        results[n_threads] = first
    assert results[1][0] == results[2][0]
    np.testing.assert_array_equal(results[1][1], results[2][1])
