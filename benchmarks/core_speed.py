"""Python-level timing of the core: µs per atom of energy+forces+stress and of one loss+gradient pass.

Data as BENCHMARKS.md §1: the first 100 frames of motep crystals_multi (2700 atoms, 3 species,
R_cut 5 Å), R = 8. Times are medians of repeated passes through `Objective.predict` and
`Objective.fun_and_jac` (the C++ time plus the thin Python layer). Needs ../shared.

    python benchmarks/core_speed.py --levels 8 16 20 --threads 1 --json out.json
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from mtpfit import MTP, Dataset, Objective
from mtpfit.io import read_cfg

SHARED = Path(__file__).resolve().parents[2] / "shared"
# MLIP-2 serial figures from BENCHMARKS.md §1, µs/atom: level -> (energy+forces, loss+gradient)
MLIP2 = {6: (3.6, 20), 8: (5.9, 36), 10: (12.5, 78), 12: (18.7, 134), 16: (52, 367), 20: (125, 866)}


def _median_time(call, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[8, 16, 20])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    data = Dataset(read_cfg(SHARED / "data" / "motep_cfg" / "crystals_multi" / "training.cfg")[:100])
    rows = []
    for level in args.levels:
        mtp = MTP.from_level(level, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
        theta = mtp.init_params(interval=0.05, seed=0)
        obj = Objective(mtp, data, n_threads=args.threads)
        efs = _median_time(lambda: obj.predict(theta), args.repeat)

        def pass_at_new_point():
            obj.fun_and_jac(theta + obj.n_evaluations * 1e-12)  # a new x defeats the cache

        grad = _median_time(pass_at_new_point, args.repeat)
        # the same pass through the bare binding, interleaved pairwise with the Objective call so that machine
        # noise hits both alike: the Python layer's share of a pass
        core = obj.training_set.loss_and_gradient
        bare, wrapped = [], []
        for k in range(3 * args.repeat):
            start = time.perf_counter()
            core(mtp.basis.core, theta, args.threads)
            bare.append(time.perf_counter() - start)
            x = theta + (k + 1) * 1e-12
            start = time.perf_counter()
            obj.fun_and_jac(x)
            wrapped.append(time.perf_counter() - start)
        overhead = statistics.median(wrapped) / statistics.median(bare) - 1.0
        per_atom = 1e6 / data.n_atoms
        ref = MLIP2.get(level, (np.nan, np.nan))
        rows.append({"level": level, "n_params": mtp.n_params, "threads": args.threads,
                     "efs_us_per_atom": efs * per_atom, "loss_grad_us_per_atom": grad * per_atom,
                     "mlip2_efs_us_per_atom": ref[0], "mlip2_loss_grad_us_per_atom": ref[1],
                     "python_overhead": overhead})
        r = rows[-1]
        print(f"level {level:2d} ({mtp.n_params} params, {args.threads} thread(s)): energy+forces "
              f"{r['efs_us_per_atom']:7.2f} µs/atom (MLIP-2 {ref[0]}), loss+gradient "
              f"{r['loss_grad_us_per_atom']:7.2f} µs/atom (MLIP-2 {ref[1]}), Objective.fun_and_jac over the bare "
              f"core call: {100 * overhead:+.1f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
