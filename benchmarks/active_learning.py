"""Active learning against random selection on EMT Au/Ag/Cu (issue 18, acceptance 2).

The labeller is ASE's EMT, which reproduces the labels of ``../shared/data/motep_cfg/crystals_multi`` (EMT MD of
27-atom Au/Ag/Cu cells at 1000 K; types 0/1/2 = Au/Ag/Cu: checked here, energy to 1e-12 eV). Its first 100 frames
are the held-out test set. ``mtpfit.active.learn`` starts from 10 later frames (their stored EMT labels) and
explores with Langevin MD at 300–1200 K; then, for each of ``--random`` seeds, a potential is trained from scratch
on the same 10 seeds plus as many frames chosen at random from the same explorations (every frame the loop graded,
``cycleKKK_frames.cfg``) as the loop selected, labelled by EMT, with the loop's final training settings. Printed
and written (``--json``): labelled configurations, wall times, and the test force RMSE of each potential.

    python benchmarks/active_learning.py --output /tmp/al --json benchmarks/results/active_learning.json
"""
import argparse
import glob
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

import mtpfit
from mtpfit import Dataset
from mtpfit.active import LearningConfig, learn
from mtpfit.io import read_cfg, read_configurations
from mtpfit.metrics import error_metrics
from mtpfit.objective import Objective

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "motep_cfg" / "crystals_multi" / "training.cfg"
SPECIES = ["Au", "Ag", "Cu"]


def emt_label(configuration):
    atoms = configuration.to_ase()
    atoms.calc = EMT()
    return configuration.__class__(positions=configuration.positions, species=configuration.species,
                                   cell=configuration.cell, pbc=configuration.pbc,
                                   energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                   plus_stress=-atoms.get_stress(voigt=False) * atoms.get_volume(),
                                   source=configuration.source)


def force_rmse(mtp, test):
    """Force RMSE per component (MLIP's), eV/Å."""
    return error_metrics(test, Objective(mtp, test).predict())["all"]["force_rmse"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="active-learning-run")
    parser.add_argument("--level", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--max-cycles", type=int, default=8)
    parser.add_argument("--max-selected", type=int, default=10)
    parser.add_argument("--random", type=int, default=3, help="random-selection baselines")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    data = read_configurations(DATA, species=SPECIES)
    check = emt_label(data[0])
    assert abs(check.energy - data[0].energy) < 1e-9, "EMT does not reproduce the data's labels"
    test = data.subset(range(100), "crystals_multi[:100]")
    seeds = [data[k].to_ase() for k in range(150, 1000, 85)][:10]
    for atoms, k in zip(seeds, range(150, 1000, 85)):
        labelled = data[k]
        atoms.calc = SinglePointCalculator(atoms, energy=labelled.energy, forces=labelled.forces,
                                           stress=(-labelled.plus_stress / atoms.get_volume())[[0, 1, 2, 1, 0, 0],
                                                                                               [0, 1, 2, 2, 2, 1]])
    config = LearningConfig(seeds=seeds, labeller="emt", species=SPECIES, level=args.level, min_dist=2.0,
                            max_dist=5.0, max_iter=300, temperatures=[300.0, 600.0, 900.0, 1200.0],
                            steps=args.steps, grade_every=10, max_selected=args.max_selected,
                            max_cycles=args.max_cycles, threads=args.threads, output=args.output)
    began = time.perf_counter()
    result = learn(config, log=print)
    loop_s = time.perf_counter() - began
    n_selected = len(result.labelled) - len(seeds)
    loop_rmse = force_rmse(result.mtp, test)
    print(f"loop: {result.reason}, {len(result.labelled)} labelled ({n_selected} selected), {loop_s:.0f} s, "
          f"test force RMSE {loop_rmse:.4f} eV/Å")
    frames = [f for path in sorted(glob.glob(str(Path(args.output) / "cycle*_frames.cfg")))
              for f in read_cfg(path, species=SPECIES)]
    seed_set = result.labelled.subset(range(len(seeds)))
    baselines = []
    for r in range(args.random):
        rng = np.random.default_rng(r)
        picked = [emt_label(frames[int(i)]) for i in rng.choice(len(frames), size=n_selected, replace=False)]
        train = seed_set + Dataset(picked, "random")
        tick = time.perf_counter()
        run = mtpfit.fit(train=train, validation=test, level=args.level, min_dist=2.0, max_dist=5.0, max_iter=300,
                         output=None, threads=args.threads, quiet=True)
        baselines.append({"seed": r, "force_rmse": force_rmse(run.mtp, test),
                          "train_s": time.perf_counter() - tick})
        print(f"random selection {r}: test force RMSE {baselines[-1]['force_rmse']:.4f} eV/Å")
    median = statistics.median(b["force_rmse"] for b in baselines)
    print(f"active / random (median of {args.random}): {loop_rmse / median:.3f} "
          f"({loop_rmse:.4f} against {median:.4f} eV/Å, {len(result.labelled)} labelled configurations each, "
          f"{len(frames)} explored frames)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "labelled": len(result.labelled), "selected": n_selected, "reason": result.reason, "loop_s": loop_s,
            "cycles": result.rows, "explored_frames": len(frames), "loop_force_rmse": loop_rmse,
            "random": baselines, "ratio": loop_rmse / median}, indent=2, default=str))


if __name__ == "__main__":
    main()
