"""Validation error against training wall time for one trainer on one dataset (issue 13, acceptance 3–5 and 7).

    python benchmarks/time_to_accuracy.py --dataset mlearn-Mo --level 20 --trainer varpro --seconds 900 \
        --out benchmarks/results/time_to_accuracy/mo20_varpro.json

Every ``--every`` seconds of training (and at the end) the current θ is evaluated on the test/validation set;
the evaluation's own time is taken off the training clock, and the budget is enforced on that clock, so every
trainer gets the same training time. Datasets (all read from ../shared, never shipped):

* ``mlearn-EL``: Zuo et al. 2020 training/test JSON of element EL (Cu/Mo/Ni shears in the xy xz yz order), MLIP-2's
  default loss (1 / 0.01 / 0.001, averaged, penalty), θ₀ the MLIP load defaults;
* ``agpd``: the optimizer study's Ag–Pd train/validation JSON with the file's weights as they are (plain sums,
  no penalty: the study's loss), θ₀ uniform in ±0.1 from ``--seed`` (the study's protocol: seed 43).

Trainers: ``varpro`` (``varpro-scaled``: BFGS from N&W's scaled H₀), ``varpro-lm`` (Kaufman's Levenberg–Marquardt on the
radial block, JᵀWJ sketched with 8 rows per configuration), ``native-bfgs`` (75 pre-training iterations, then BFGS on θ), ``lm`` (Levenberg–Marquardt,
JᵀWJ sketched with 8 rows per configuration), ``bfgs`` (scipy), ``adam`` (lr 1e-3, batches of 32, clipping 1);
all but varpro and the native BFGS start from the exact linear re-solve (adam from the species fit, the CLI's
default for mini-batch optimizers).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import scipy.optimize

from mtpfit import MTP, Loss, Objective
from mtpfit.io import read_configurations
from mtpfit.metrics import error_metrics
from mtpfit.optim import ParameterBlocks, make_optimizer
from mtpfit.optim.least_squares import levenberg_marquardt
from mtpfit.optim.native_bfgs import native_bfgs
from mtpfit.optim.varpro import varpro
from mtpfit.optim.varpro_lm import varpro_lm
from mtpfit.train.initial import starting_point

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHEARS_XZ = {"Cu", "Mo", "Ni"}


def datasets(name: str):
    if name == "agpd":
        return (read_configurations(SHARED / "AgPd" / "train.json"),
                read_configurations(SHARED / "AgPd" / "validation.json"))
    element = name.split("-", 1)[1]
    order = "xx yy zz xy xz yz" if element in SHEARS_XZ else "xx yy zz xy yz xz"
    folder = SHARED / "mlearn" / "json" / element
    return (read_configurations(folder / "training.json", stress_order=order),
            read_configurations(folder / "test.json", stress_order=order))


class Clock:
    """Training time: wall (and CPU) time since start minus the time spent validating."""

    def __init__(self, objective, validation, budget, every, label):
        self.objective, self.budget, self.every, self.label = objective, budget, every, label
        self.valid = Objective(objective.mtp, validation, objective.loss, objective.n_threads)
        self.validation = validation
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.paused = self.cpu_paused = 0.0
        self.rows, self.last = [], -np.inf

    def train_time(self):
        return time.perf_counter() - self.start - self.paused

    def check(self, x, loss=None, force=False):
        """Validate when due; raise StopIteration when the budget is spent."""
        now = self.train_time()
        if force or now - self.last >= self.every:
            began, cpu_began = time.perf_counter(), time.process_time()
            m = error_metrics(self.validation, self.valid.predict(x))["all"]
            self.rows.append({"train_s": now, "train_cpu_s": time.process_time() - self.cpu_start - self.cpu_paused,
                              "loss": None if loss is None else float(loss), "passes": self.objective.n_evaluations,
                              "linear_systems": self.objective.n_linear_systems,
                              **{k: m[k] for k in ("epa_rmse", "epa_mae", "force_rmse", "force_mae_component",
                                                   "force_mae_mlip", "force_rmse_vector", "stress_rmse_gpa")}})
            r = self.rows[-1]
            print(f"{self.label}: {now:7.1f} s  loss {r['loss'] if r['loss'] is not None else float('nan'):.4e}  "
                  f"EPA RMSE {1e3 * r['epa_rmse']:.3f} MAE {1e3 * r['epa_mae']:.3f} meV/atom  "
                  f"force RMSE {r['force_rmse']:.4f} eV/Å", flush=True)
            self.last = now
            self.paused += time.perf_counter() - began
            self.cpu_paused += time.process_time() - cpu_began
        if not force and self.train_time() >= self.budget:
            raise StopIteration


def run(trainer, objective, x0, clock, seed):
    big = 10 ** 7

    def callback(r):
        clock.check(r.x, r.fun)

    if trainer == "varpro":
        return varpro(objective, x0, max_iter=big, stop_tolerance=0, callback=callback).x
    if trainer == "varpro-scaled":
        return varpro(objective, x0, max_iter=big, stop_tolerance=0, scale_initial_hessian=True, callback=callback).x
    if trainer == "varpro-lm":
        return varpro_lm(objective, x0, max_iter=big, sketch=8, callback=callback).x
    if trainer == "native-bfgs":
        return native_bfgs(objective, x0, max_iter=big, stop_tolerance=0, callback=callback).x
    if trainer == "lm":
        x = starting_point(objective, x0, "resolve")
        return levenberg_marquardt(objective, x, max_iter=big, sketch=8, callback=callback).x
    if trainer == "bfgs":
        x = starting_point(objective, x0, "resolve")
        state = {"x": x}

        def scipy_callback(intermediate_result):
            state["x"] = intermediate_result.x
            clock.check(intermediate_result.x, intermediate_result.fun)

        scipy.optimize.minimize(objective.fun_and_jac, x, jac=True, method="BFGS", callback=scipy_callback,
                                options={"maxiter": big, "gtol": 0.0})
        return state["x"]
    if trainer == "adam":
        x = starting_point(objective, x0, "species")
        optimizer = make_optimizer("adam", lr=1e-3, clip=1.0)
        state = optimizer.init(x, ParameterBlocks.of(objective.mtp))
        rng = np.random.default_rng(seed)
        K = len(objective.dataset)
        try:
            while True:
                order = rng.permutation(K)
                for b in range(0, K, 32):
                    loss, grad = objective.fun_and_jac(x, order[b:b + 32])
                    x, state = optimizer.step(grad, state, x)
                    clock.check(optimizer.eval_params(state, x), loss)
        except StopIteration:
            return optimizer.eval_params(state, x)
    raise ValueError(f"unknown trainer {trainer!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="mlearn-EL or agpd")
    parser.add_argument("--level", type=int, required=True)
    parser.add_argument("--min-dist", type=float)
    parser.add_argument("--max-dist", type=float)
    parser.add_argument("--trainer", required=True, choices=("varpro", "varpro-scaled", "varpro-lm", "native-bfgs", "lm", "bfgs", "adam"))
    parser.add_argument("--seconds", type=float, required=True, help="training wall-time budget")
    parser.add_argument("--every", type=float, default=10.0, help="validate every this many training seconds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=43, help="agpd: θ₀ uniform in ±0.1 from this seed")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    train, valid = datasets(args.dataset)
    agpd = args.dataset == "agpd"
    min_dist = args.min_dist or (1.9 if agpd else 2.0)
    max_dist = args.max_dist or 5.0
    mtp = MTP.from_level(args.level, species=train.species(), min_dist=min_dist, max_dist=max_dist)
    loss = Loss(kind="file", average=False, penalty=False) if agpd else Loss()
    objective = Objective(mtp, train, loss, n_threads=args.threads)
    x0 = mtp.init_params(0.1, args.seed) if agpd else mtp.theta
    label = f"{args.dataset} L{args.level} {args.trainer}"
    clock = Clock(objective, valid, args.seconds, args.every, label)
    clock.check(x0, objective.fun(x0), force=True)
    x = run(args.trainer, objective, x0, clock, args.seed)
    clock.check(x, objective.fun(x), force=True)
    record = {"dataset": args.dataset, "level": args.level, "min_dist": min_dist, "max_dist": max_dist,
              "trainer": args.trainer, "budget_s": args.seconds, "threads": args.threads, "seed": args.seed,
              "n_params": mtp.n_params, "n_train": len(train), "n_validation": len(valid),
              "host_cpus": os.cpu_count(), "rows": clock.rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
