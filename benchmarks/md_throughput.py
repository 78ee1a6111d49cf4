"""MD throughput of the ASE calculator: µs per atom per VelocityVerlet step, beside the core's own time.

For Mo bcc cells (a = 3.147 Å) of 2,000 and 16,000 atoms on 1 and 2 threads, this prints and writes
(``--json``):

* ``core``: one energy+forces evaluation through the bare binding ``_core.evaluate`` on a neighbour list built
  beforehand (the median of ``--repeat``), µs per atom, of the configuration the MD run ended at: thermal motion
  changes the pairs inside the cutoff (bcc Mo's fourth shell, at 5.218 Å, straddles the 5.2 Å cutoff), and the
  perfect lattice would be cheaper than the MD's own configurations;
* ``md``: ``VelocityVerlet(...).run(steps)`` with :class:`mtpfit.MTPCalculator` (its default skin), µs per atom
  per step, the list built before the clock starts, and the lists built during the run;
* ``md_no_skin``: the same with ``skin=0`` (a new neighbour list every step, the calculator before the skin);
* the ratios md / core and the 1 → 2 thread speed-ups;
* ``skins``: for each of ``--skins`` at the largest thread count, the cost of a longer list: the time of one
  build (``build_structure``) and of one core evaluation on it, and its pairs.

The potential is an untrained level-16 MTP with θ uniform in [−0.1, 0.1] (seed 0), R_cut 5.2 Å, its moment
coefficients scaled by 1e-3: its cost is that of a trained one of the level (no coefficient is zero), but
unscaled its lattice is so unstable that atoms collide within 30 steps. Weak, it lets the atoms of the thermal
start (Maxwell–Boltzmann at ``--temperature``, default 300 K, seeded) fly nearly freely, so the lists are rebuilt
more often than in a crystal (every ~30 steps at 1 fs). ``--potential FILE`` times a trained one-species potential
instead, e.g. ``../shared/data/mlearn/mtp_fitted/Mo/fitted.mtp``, whose rebuilds are those of a real run.

    python benchmarks/md_throughput.py --json md_throughput.json
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from mtpfit import MTP, MTPCalculator, _core
from mtpfit.calculator import DEFAULT_SKIN
from mtpfit.data.configuration import Configuration
from mtpfit.data.neighbors import build_structure

LATTICE = 3.147   # Å, Mo bcc


def _cell(n_atoms: int, temperature: float, seed: int):
    repeats = round((n_atoms / 2) ** (1 / 3))
    atoms = bulk("Mo", "bcc", a=LATTICE, cubic=True).repeat((repeats,) * 3)
    if len(atoms) != n_atoms:
        raise SystemExit(f"{n_atoms} atoms is not 2·k³ (a cubic bcc cell)")
    if temperature > 0.0:
        thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    return atoms


def _config(atoms) -> Configuration:
    return Configuration(atoms.positions, atoms.get_chemical_symbols(), atoms.cell.array, atoms.pbc)


def _median_time(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _core_time(mtp: MTP, atoms, threads: int, repeat: int, skin: float = 0.0):
    """(s per evaluation, s per build, pairs) of the bare core on a list built at cutoff + skin."""
    config = _config(atoms)
    types = mtp.types_of(config)
    b = mtp.basis
    build = _median_time(lambda: build_structure(config, types, b.max_dist, b.species_count, 0.0, skin), 3)
    structure = build_structure(config, types, b.max_dist, b.species_count, 0.0, skin)
    _core.evaluate(b.core, mtp.theta, structure, threads)          # warm-up (threads, pages)
    seconds = _median_time(lambda: _core.evaluate(b.core, mtp.theta, structure, threads), repeat)
    return seconds, build, structure.n_pairs


def _md_time(mtp: MTP, atoms, threads: int, steps: int, skin: float):
    """(s per step, lists built during the run, the atoms at the end) of VelocityVerlet with the calculator."""
    atoms = atoms.copy()
    atoms.calc = MTPCalculator(mtp, n_threads=threads, skin=skin)
    md = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    atoms.get_forces()                                               # the first list, outside the clock
    built = atoms.calc.neighbor_builds
    start = time.perf_counter()
    md.run(steps)
    return (time.perf_counter() - start) / steps, atoms.calc.neighbor_builds - built, atoms


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atoms", type=int, nargs="+", default=[2000, 16000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--atom-steps", type=int, default=60000,
                        help="atoms × steps of each MD timing (steps = max(5, this // atoms))")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skins", type=float, nargs="*", default=[0.0, 0.3, 0.5, 1.0])
    parser.add_argument("--potential", help="a trained one-species .mtp file (default: untrained level 16)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.potential:
        mtp = MTP.read(args.potential).named_for(["Mo"])
    else:
        mtp = MTP.from_level(16, species=["Mo"], max_dist=5.2)
        theta = mtp.init_params(0.1, 0)
        theta[mtp.blocks["moment"]] *= 1e-3
        mtp.theta = theta
    temperature = args.temperature
    report = {"temperature": temperature, "potential": args.potential or
              "level 16, untrained, theta ~ U(-0.1, 0.1) seed 0, moment block x 1e-3",
              "cutoff": mtp.basis.max_dist, "skin": DEFAULT_SKIN, "lattice": LATTICE, "cells": []}
    for n in args.atoms:
        atoms = _cell(n, temperature, args.seed)
        steps = max(5, args.atom_steps // n)
        cell = {"atoms": n, "steps": steps, "threads": {}, "skins": []}
        for threads in args.threads:
            md, builds, final = _md_time(mtp, atoms, threads, steps, DEFAULT_SKIN)
            core, _, _ = _core_time(mtp, final, threads, args.repeat)
            bare, _, _ = _md_time(mtp, atoms, threads, steps, 0.0)
            row = {"core_us_per_atom": 1e6 * core / n, "md_us_per_atom_step": 1e6 * md / n,
                   "md_builds": builds, "md_no_skin_us_per_atom_step": 1e6 * bare / n, "md_over_core": md / core,
                   "md_no_skin_over_core": bare / core}
            cell["threads"][threads] = row
            print(f"{n:6d} atoms, {threads} thread(s): core {row['core_us_per_atom']:6.2f} µs/atom, MD "
                  f"{row['md_us_per_atom_step']:6.2f} µs/atom/step ({row['md_over_core']:.2f}× core, {builds} "
                  f"lists in {steps} steps), without skin {row['md_no_skin_us_per_atom_step']:6.2f} "
                  f"({row['md_no_skin_over_core']:.2f}× core)", flush=True)
        first, last = min(args.threads), max(args.threads)
        if first != last:
            a, b = cell["threads"][first], cell["threads"][last]
            cell["speedup"] = {"core": a["core_us_per_atom"] / b["core_us_per_atom"],
                               "md": a["md_us_per_atom_step"] / b["md_us_per_atom_step"]}
            print(f"{n:6d} atoms, {first} → {last} threads: core {cell['speedup']['core']:.2f}×, MD "
                  f"{cell['speedup']['md']:.2f}×", flush=True)
        for skin in args.skins:
            core, build, pairs = _core_time(mtp, atoms, last, args.repeat, skin)
            cell["skins"].append({"skin": skin, "pairs": pairs, "build_ms": 1e3 * build, "core_ms": 1e3 * core})
            print(f"{n:6d} atoms, skin {skin:.1f} Å: {pairs} pairs, build {1e3 * build:7.1f} ms, core "
                  f"({last} threads) {1e3 * core:7.1f} ms", flush=True)
        report["cells"].append(cell)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
