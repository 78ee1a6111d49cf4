"""One MD step of the ASE calculator against one core evaluation of the same configuration, interleaved.

For a Mo bcc cell (``--atoms``, default 2000) on 1 and 2 threads: a VelocityVerlet step with
:class:`mtpfit.MTPCalculator` (its default skin), then one bare ``_core.evaluate`` of the configuration that step
reached (a neighbour list built at the cutoff just before, its incoming-pair index built outside the clock), for
``--pairs`` pairs on each thread count in turn. Medians of the per-pair ratios are printed: the overhead of the ASE
front end (issue 17, acceptance 3) and the 1 → 2 thread speed-ups, robust to a machine whose speed drifts.

    python benchmarks/md_step_pairs.py --potential mtpfit-run/trained.mtp --atoms 2000 --pairs 60
"""
import argparse
import statistics
import time
import warnings

from ase import units
from ase.md.verlet import VelocityVerlet

from md_throughput import _cell, _config
from mtpfit import MTP, MTPCalculator, _core
from mtpfit.data.neighbors import build_structure


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--potential", required=True, help="a trained one-species (Mo) .mtp file")
    parser.add_argument("--atoms", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=60)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    mtp = MTP.read(args.potential).named_for(["Mo"])
    b = mtp.basis
    md = {}
    for threads in (1, 2):
        atoms = _cell(args.atoms, 300.0, 0)
        atoms.calc = MTPCalculator(mtp, n_threads=threads)
        md[threads] = VelocityVerlet(atoms, 1.0 * units.fs)
        md[threads].run(2)

    def core(threads):
        config = _config(md[threads].atoms)
        structure = build_structure(config, mtp.types_of(config), b.max_dist, b.species_count, b.min_dist)
        _core.evaluate(b.core, mtp.theta, structure, threads, False)  # builds the incoming-pair index
        start = time.perf_counter()
        _core.evaluate(b.core, mtp.theta, structure, threads, False)
        return time.perf_counter() - start

    rows = {key: [] for key in ("md1", "core1", "md2", "core2")}
    for _ in range(args.pairs):
        for threads in (1, 2):
            start = time.perf_counter()
            md[threads].run(1)
            rows[f"md{threads}"].append(time.perf_counter() - start)
            rows[f"core{threads}"].append(core(threads))
    n = args.atoms

    def ratio(a, b):
        return statistics.median(x / y for x, y in zip(rows[a], rows[b]))

    us = {key: 1e6 * statistics.median(v) / n for key, v in rows.items()}
    print(f"{n} atoms, {args.pairs} interleaved pairs, µs/atom: core 1 thread {us['core1']:.2f}, MD step "
          f"{us['md1']:.2f} (MD/core {ratio('md1', 'core1'):.3f}); core 2 threads {us['core2']:.2f}, MD step "
          f"{us['md2']:.2f} (MD/core {ratio('md2', 'core2'):.3f}); 1 → 2 threads: MD ×{ratio('md1', 'md2'):.3f}, "
          f"core ×{ratio('core1', 'core2'):.3f}; lists built {md[1].atoms.calc.neighbor_builds}, "
          f"{md[2].atoms.calc.neighbor_builds}")


if __name__ == "__main__":
    main()
