"""Cost of one reduced-loss evaluation (linear system + solve + gradient) against one loss+gradient pass
(issue 13, acceptance 2), and the memory the linear system adds.

    python benchmarks/linear_system_cost.py --levels 16 20 --reps 5 --threads 2 --json out.json

Data: the first 100 frames of ../shared/data/motep_cfg/crystals_multi/training.cfg (3 species, R_cut 5 Å) and the
mlearn Mo training set (R_cut 5.2 Å). The passes are interleaved (A B A B …) at slightly different θ, and the
ratio is taken pair by pair; medians are printed. Memory: the process's peak resident set before the first and
after the last linear system (``ru_maxrss``), i.e. what the accumulation adds on top of the training-set
representation.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from mtpfit import MTP, Loss, Objective
from mtpfit.io import read_configurations
from mtpfit.optim.linear import ReducedLoss

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[16, 20])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    sets = {"crystals_multi[:100]": (read_configurations(SHARED / "motep_cfg" / "crystals_multi" / "training.cfg")[:100],
                                     2.0, 5.0),
            "mlearn Mo": (read_configurations(SHARED / "mlearn" / "json" / "Mo" / "training.json",
                                              stress_order="xx yy zz xy xz yz"), 2.0, 5.2)}
    out = []
    for name, (data, min_dist, max_dist) in sets.items():
        for level in args.levels:
            mtp = MTP.from_level(level, species=data.species(), min_dist=min_dist, max_dist=max_dist)
            objective = Objective(mtp, data, Loss(), n_threads=args.threads)
            x = mtp.init_params(0.1, 3)
            radial = mtp.blocks["radial"]
            objective.fun_and_jac(x)                      # warm-up
            before = peak_mib()
            pass_s, system_s, eval_s, ratios = [], [], [], []
            for rep in range(args.reps):
                shifted = x.copy()
                shifted[radial] *= 1.0 + 1e-6 * (rep + 1)
                t = time.perf_counter()
                objective.fun_and_jac(shifted)
                a = time.perf_counter() - t
                reduced = ReducedLoss(objective, shifted)
                t = time.perf_counter()
                objective.linear_system(shifted)
                s = time.perf_counter() - t
                t = time.perf_counter()
                reduced.fun(shifted[radial])
                reduced.jac(shifted[radial])
                b = time.perf_counter() - t
                pass_s.append(a)
                system_s.append(s)
                eval_s.append(b)
                ratios.append(b / a)
            row = {"data": name, "level": level, "atoms": int(sum(c.n_atoms for c in data)),
                   "n_linear": mtp.basis.species_count + len(mtp.basis.alpha_moment_mapping),
                   "threads": args.threads, "loss_gradient_s": float(np.median(pass_s)),
                   "linear_system_s": float(np.median(system_s)), "reduced_evaluation_s": float(np.median(eval_s)),
                   "ratio_median": float(np.median(ratios)), "ratio_min": float(np.min(ratios)),
                   "ratio_max": float(np.max(ratios)), "system_over_pass": float(np.median(system_s) / np.median(pass_s)),
                   "peak_mib_before": before, "peak_mib_after": peak_mib()}
            out.append(row)
            print(f"{name:22s} level {level}: loss+gradient {row['loss_gradient_s']:.3f} s, linear system "
                  f"{row['linear_system_s']:.3f} s, reduced evaluation (system + solve + gradient) "
                  f"{row['reduced_evaluation_s']:.3f} s = {row['ratio_median']:.2f}× a pass (min {row['ratio_min']:.2f}, "
                  f"max {row['ratio_max']:.2f}); peak RSS {row['peak_mib_before']:.0f} → {row['peak_mib_after']:.0f} MiB",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
