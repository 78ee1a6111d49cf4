"""Cost of the extrapolation grade in the LAMMPS plugin: µs per atom per NVE step with `pair_style mtp POT` and
with `pair_style mtp POT extrapolation POT.als.txt every 1` (every step graded, the per-atom γ collected by
`fix pair` and the largest by `compute pair`, as an input that stops on γ would).

The active set is the neighbourhood-mode set of the bundled mlearn Mo training set (194 configurations) for POT,
built once and exported with ``ActiveSet.write_lammps``. Bcc Mo, a = 3.16 Å, 600 K start, 1 fs, 1 rank, 1 thread;
the time per step is LAMMPS's "Loop time" (set-up excluded). The settings run ``--runs`` times interleaved;
medians and ranges are printed and written (``--json``).

    python benchmarks/lammps_grade_cost.py --potential mtpfit-run/trained.mtp --json lammps_grade_cost.json
"""
import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from mtpfit import MTP
from mtpfit.active import build_active_set
from mtpfit.datasets import load_bundled
from mtpfit.lammps import plugin_path, run_lammps, us_per_atom_step

INPUT = """
units           metal
atom_style      atomic
boundary        p p p
plugin          load ${plugin}
lattice         bcc 3.16
region          box block 0 ${n} 0 ${n} 0 ${n}
create_box      1 box
create_atoms    1 box
mass            1 95.95
include         ${pair}
pair_coeff      * * Mo
neighbor        1.0 bin
neigh_modify    every 1 delay 0 check yes
velocity        all create 600.0 4928459 loop geom
timestep        0.001
fix             nve all nve
thermo          ${steps}
run             ${steps}
"""


def step_us(plugin, pair_file, n, steps, work) -> float:
    stdout = run_lammps(work / "md.in", dict(plugin=plugin, pair=pair_file, n=n, steps=steps))
    return us_per_atom_step(stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--potential", required=True, help="a trained Mo .mtp")
    parser.add_argument("--cells", type=int, default=10, help="bcc repeats: 10 → 2000 atoms")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    plugin, mtp = plugin_path(), MTP.read(args.potential)
    train, _ = load_bundled("mlearn-Mo")
    start = time.perf_counter()
    with warnings.catch_warnings():  # a few training pairs sit just inside min_dist: known, not news here
        warnings.simplefilter("ignore")
        active = build_active_set(mtp.named_for(train.species()), train, mode="neighbourhood")
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "md.in").write_text(INPUT)
        als = work / "pot.als.txt"
        active.write_lammps(als, mtp)
        pairs = {"not graded": f"pair_style mtp {args.potential}\n",
                 "graded every step": f"pair_style mtp {args.potential} extrapolation {als} every 1\n"
                                      "fix gamma all pair 1 mtp gamma 0\ncompute mtp all pair mtp\n"
                                      "variable max_gamma equal c_mtp[1]\n"
                                      "fix halt all halt 1 v_max_gamma > 1e300 error soft\n"}
        for name, text in pairs.items():
            (work / f"{name.replace(' ', '_')}.pair").write_text(text)
        samples = {name: [] for name in pairs}
        for _ in range(args.runs):
            for name in pairs:
                samples[name].append(step_us(plugin, work / f"{name.replace(' ', '_')}.pair", args.cells,
                                             args.steps, work))
    med = {k: statistics.median(v) for k, v in samples.items()}
    out = {"potential": args.potential, "atoms": 2 * args.cells ** 3, "steps": args.steps,
           "active_set_size": len(active.columns), "active_set_build_s": build_s,
           "median_us_per_atom_step": med, "range": {k: [min(v), max(v)] for k, v in samples.items()},
           "grade_us_per_atom": med["graded every step"] - med["not graded"]}
    print(f"{out['atoms']} atoms, {args.steps} steps, active set of {out['active_set_size']} (built in "
          f"{build_s:.1f} s), medians of {args.runs}: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items())
          + f" µs/atom/step; the grade {out['grade_us_per_atom']:.3f} µs/atom per graded step "
          f"({100 * out['grade_us_per_atom'] / med['not graded']:.1f} %)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
