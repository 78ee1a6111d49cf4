"""Executing one run of a campaign: data, model, optimizer, errors, and an atomically written result file."""
from __future__ import annotations

import json
import os
import platform
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import __version__
from ..data.dataset import Dataset
from ..datasets import load_bundled
from ..io import read_configurations
from ..metrics import error_metrics
from ..objective import Loss, Objective
from ..optim import make_optimizer
from ..potential.mtp import MTP
from ..train import FULL_BATCH_METHODS, passes_summary, starting_point, train_full_batch
from ..train.hybrid import train_hybrid
from ..train.initial import SELF_STARTING, default_start
from ..train.minibatch import train_minibatch
from .results import write_result

__all__ = ["execute", "run_and_save", "start_of"]


def start_of(opt: dict) -> str:
    """The starting point of an optimizer entry: its ``start`` (resolve, species or none), or in older campaign
    files ``species_fit`` (true: species, false: none); by default :func:`~mtpfit.train.initial.default_start` of
    its trainer (resolve for full batch, species for the mini-batch zoo)."""
    if "start" in opt:
        return opt["start"]
    if "species_fit" in opt:
        return "species" if opt["species_fit"] else "none"
    return default_start(opt["name"])


@lru_cache(maxsize=8)
def _datasets(dataset_json: str, base: str, seed: int) -> tuple[Dataset, Dataset]:
    """Training and validation sets of a dataset entry (cached per worker process)."""
    entry = json.loads(dataset_json)
    order = entry.get("stress_order", "xx yy zz xy yz xz")

    def read(paths):
        sets = [read_configurations(Path(base) / p, stress_order=order) for p in paths]
        total = sets[0]
        for other in sets[1:]:
            total = total + other
        return total

    if "bundled" in entry:
        return load_bundled(entry["bundled"])
    if "train" in entry:
        return read(entry["train"]), read(entry["validation"])
    # one file split: seeded by the dataset's own split_seed so every run sees the same split
    return read(entry["file"]).split(entry.get("validation_fraction", 0.2), seed=entry.get("split_seed", 0))


def execute(spec: dict, base: str | Path) -> dict:
    """Run one campaign run and return its result record (not written).

    Parameters
    ----------
    spec : dict
        A run of :attr:`Campaign.runs`.
    base : path
        The campaign file's folder (dataset paths are relative to it).

    Returns
    -------
    dict
        ``spec``, ``result`` (errors, wall time, passes and what they were, iterations, final loss, scipy's
        fields, the starting point and the seconds it took, not in the wall time),
        ``history`` (loss per iteration or step) and ``machine``.
    """
    opt = spec["optimizer"]
    seed = int(spec["seed"])
    train, valid = _datasets(json.dumps(spec["dataset"], sort_keys=True), str(base), seed)
    model = spec["model"]
    species = spec["dataset"].get("species") or train.species()
    mtp = MTP.from_level(model["level"], species=species, min_dist=model.get("min_dist", 2.0),
                         max_dist=model.get("max_dist", 5.0), radial_basis_size=model.get("radial_basis_size", 8))
    objective = Objective(mtp, train, Loss(**spec["loss"]), n_threads=spec.get("threads", 1))
    x0 = mtp.init_params(opt["init_interval"], seed) if "init_interval" in opt else mtp.theta
    name, start_kind = opt["name"], start_of(opt)
    began = time.perf_counter()
    x0 = starting_point(objective, x0, start_kind, method=name)
    start_s = time.perf_counter() - began
    if name.partition("+")[0] in SELF_STARTING:
        start_kind = "by the trainer"  # the native BFGS re-solves its own start
    start = time.perf_counter()
    try:
        r, history = _train(objective, x0, opt, seed, valid)
    except FloatingPointError as err:
        # a diverged run is a result of the study (its catastrophic outliers), not a failure of the campaign
        return {"spec": spec,
                "result": {"wall_time_s": time.perf_counter() - start, "passes": float(objective.passes),
                           "nit": None, "final_loss": None, "success": False, "diverged": True,
                           "message": f"diverged: {err}", "start": start_kind, "start_s": start_s,
                           "errors": {"train": {}, "validation": {}}},
                "history": [], "machine": _machine()}
    errors = {"train": error_metrics(train, objective.predict(r.x))["all"],
              "validation": error_metrics(valid, Objective(mtp, valid, objective.loss, 1).predict(r.x))["all"]}
    clean = lambda v: None if isinstance(v, float) and not np.isfinite(v) else v  # noqa: E731
    return {"spec": spec,
            "result": {"wall_time_s": float(r.wall_time), "passes": float(r.nfev),
                       "passes_summary": passes_summary(r, name), "nit": int(r.nit), "final_loss": float(r.fun),
                       "start": start_kind, "start_s": start_s,
                       "success": bool(r.success), "diverged": False, "message": str(r.message),
                       "errors": {part: {k: clean(v) for k, v in m.items()} for part, m in errors.items()}},
            "history": [float(v) for v in history],
            "machine": _machine()}


def _machine() -> dict:
    return {"mtpfit": __version__, "host": platform.node(), "cpu_count": os.cpu_count(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _train(objective: Objective, x0: np.ndarray, opt: dict, seed: int, valid: Dataset):
    """Train with the optimizer entry ``opt`` of a run; returns the result and the loss history.

    ``opt["max_seconds"]``, if present, is the run's wall-time budget on top of its iteration or epoch budget.
    """
    hyper, budget = dict(opt.get("hyper", {})), opt.get("max_seconds")
    first, _, second = opt["name"].partition("+")
    minibatch = {"epochs": opt.get("epochs", 10), "batch_size": opt.get("batch_size", 32), "seed": seed,
                 "validation": valid, "patience": opt.get("patience"), "time_limit": budget, "progress": None}
    if second:
        # hyperparameters belong to the first stage when it is a mini-batch optimizer, else to the second
        stage_one = first if first in FULL_BATCH_METHODS else make_optimizer(first, **hyper)
        run = train_hybrid(objective, stage_one, second, x0, max_iter=opt.get("max_iter", 1000),
                           refine_iter=opt.get("refine_iter"), refine_time=opt.get("refine_seconds"), **minibatch,
                           **(hyper if first in FULL_BATCH_METHODS else {}))
        return run.result, [row.get("batch_loss", row.get("loss")) for row in run.history]
    if first in FULL_BATCH_METHODS:
        run = train_full_batch(objective, x0, first, max_iter=opt.get("max_iter", 1000), log_every=0,
                               time_limit=budget, progress=None, **hyper)
        run.result.wall_time = run.wall_time
        return run.result, [row["loss"] for row in run.history]
    r = train_minibatch(objective, make_optimizer(first, **hyper), x0, validate_every=opt.get("validate_every"),
                        **minibatch)
    return r, [row["batch_loss"] for row in r.history]


def run_and_save(spec: dict, base: str, path: str) -> dict:
    """:func:`execute` and write the record to ``path`` atomically, with its checksum
    (:func:`~mtpfit.bench.results.write_result`); returns a one-line summary."""
    record = execute(spec, base)
    target = write_result(path, record)
    v = record["result"]["errors"]["validation"]
    return {"path": str(target), "label": spec["optimizer"].get("label", spec["optimizer"]["name"]),
            "seed": spec["seed"], "wall_time_s": record["result"]["wall_time_s"], "val_epa_rmse": v.get("epa_rmse"),
            "val_force_rmse": v.get("force_rmse"), "message": record["result"]["message"]}
