"""scipy BFGS on the first 100 frames of motep crystals_multi, as the reference trainer ran it.

BENCHMARKS.md §2: MLIP-2 `mlp train --init-params=same --max-iter=100`, level 08, default weights
(1, 0.01, 0.001), validation on frames 500-599. This script starts from the same MLIP load defaults
(optionally after the species-energy fit), minimises the same loss with scipy's BFGS and prints the
train/validation errors in MLIP-2's conventions and the wall time. Needs ../shared.

    python benchmarks/bfgs_crystals_multi.py --max-iter 176 --threads 1 --json out.json
"""
import argparse
import json
import time
from pathlib import Path

from mtpfit import MTP, Dataset, Objective
from mtpfit.io import read_cfg
from mtpfit.train import fit_species_energies, train_scipy

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", type=int, default=8)
    parser.add_argument("--max-iter", type=int, default=176)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--species-fit", action="store_true", help="start ξ from the least-squares fit")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    frames = read_cfg(SHARED / "data" / "motep_cfg" / "crystals_multi" / "training.cfg")
    train, validation = Dataset(frames[:100], "frames 0-99"), Dataset(frames[500:600], "frames 500-599")
    mtp = MTP.from_level(args.level, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    start = time.perf_counter()
    objective = Objective(mtp, train, n_threads=args.threads)
    build = time.perf_counter() - start
    x0 = fit_species_energies(objective, mtp.theta) if args.species_fit else mtp.theta
    run = train_scipy(objective, x0, method="BFGS", max_iter=args.max_iter, gtol=1e-12, validation=validation,
                      log_every=0, progress=None)
    out = {"level": args.level, "threads": args.threads, "max_iter": args.max_iter, "species_fit": args.species_fit,
           "nit": int(run.result.nit), "passes": int(run.result.nfev), "wall_time_s": run.wall_time,
           "build_s": build, "final_loss": float(run.result.fun), "message": str(run.result.message)}
    for part in ("train", "validation"):
        m = run.errors[part]["all"]
        out[part] = {"epa_rmse_meV": 1e3 * m["epa_rmse"], "force_rmse": m["force_rmse"],
                     "force_rmse_vector": m["force_rmse_vector"]}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
