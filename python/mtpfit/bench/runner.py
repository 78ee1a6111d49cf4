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
from ..io import read_files
from ..train import fit, passes_summary
from ..train.config import TrainingConfig
from ..train.initial import default_start
from .results import write_result

__all__ = ["execute", "run_and_save", "start_of", "training_config"]


def start_of(opt: dict, model: str = "mtp") -> str:
    """The starting point of an optimizer entry: its ``start`` (resolve, species or none), or in older campaign
    files ``species_fit`` (true: species, false: none); by default :func:`~mtpfit.train.initial.default_start` of
    its trainer and ``model`` (resolve for full batch, species for the mini-batch zoo and for an ETN)."""
    if "start" in opt:
        return opt["start"]
    if "species_fit" in opt:
        return "species" if opt["species_fit"] else "none"
    return default_start(opt["name"], model)


@lru_cache(maxsize=8)
def _datasets(dataset_json: str, base: str, seed: int) -> tuple[Dataset, Dataset]:
    """Training and validation sets of a dataset entry (cached per worker process)."""
    entry = json.loads(dataset_json)
    def read(paths):
        return read_files([Path(base) / p for p in paths], stress_order=entry.get("stress_order"),
                          stress_units=entry.get("stress_units"))

    if "bundled" in entry:
        return load_bundled(entry["bundled"])
    if "train" in entry:
        return read(entry["train"]), read(entry["validation"])
    # one file split: seeded by the dataset's own split_seed so every run sees the same split
    return read(entry["file"]).split(entry.get("validation_fraction", 0.2), seed=entry.get("split_seed", 0))


#: Campaign ``loss`` keys as :class:`~mtpfit.train.config.TrainingConfig` fields (``penalty`` and ``average``
#: are negated: ``no_penalty``, ``no_average``).
_LOSS_FIELDS = {"kind": "loss", "energy": "energy_weight", "forces": "force_weight", "stress": "stress_weight",
                "force_fraction": "force_fraction", "force_seed": "force_seed"}


def training_config(spec: dict, train: Dataset | None, validation: Dataset | None) -> TrainingConfig:
    """The :class:`~mtpfit.train.config.TrainingConfig` of a campaign run, on its (already read) data; with
    ``train`` and ``validation`` None, only its settings, checked without reading any data.

    Raises
    ------
    ValueError
        For a loss key the trainer does not know, or a bad setting, naming the run's optimizer entry.
    """
    opt, model, loss = spec["optimizer"], spec["model"], dict(spec["loss"])
    fields = {_LOSS_FIELDS[k]: v for k, v in loss.items() if k in _LOSS_FIELDS}
    fields.update({f"no_{k}": not loss[k] for k in ("penalty", "average") if k in loss})
    unknown = sorted(set(loss) - set(_LOSS_FIELDS) - {"penalty", "average"})
    if unknown:
        raise ValueError(f"run {opt.get('label', opt['name'])}: unknown loss key(s) {unknown}")
    # the force-label mask of a campaign is the loss's own (seed 0 unless it names one), as when the results were made
    fields.setdefault("force_seed", 0)
    # a model entry with model = "etn" is an ETN: its etn_* keys (TrainingConfig's) give the shape
    kind = model.get("model", "mtp")
    fields.update({k: v for k, v in model.items() if k.startswith("etn_")})
    try:
        return TrainingConfig(
            train=train, validation=validation, species=spec["dataset"].get("species"), model=kind,
            level=model.get("level", 16) if kind == "etn" else model["level"],
            min_dist=model.get("min_dist", 2.0), max_dist=model.get("max_dist", 5.0),
            radial_basis_size=model.get("radial_basis_size", 8), init_interval=opt.get("init_interval"),
            start=start_of(opt, kind), optimizer=opt["name"], max_iter=opt.get("max_iter", 1000),
            epochs=opt.get("epochs", 10), batch_size=opt.get("batch_size", 32), patience=opt.get("patience"),
            validate_every=opt.get("validate_every"), validate_seconds=opt.get("validate_seconds"),
            max_seconds=opt.get("max_seconds"),
            refine_iter=opt.get("refine_iter"), refine_seconds=opt.get("refine_seconds"),
            hyper=dict(opt.get("hyper", {})), seed=int(spec["seed"]), threads=spec.get("threads", 1), log_every=0,
            output=None, quiet=True, **fields)
    except ValueError as err:
        raise ValueError(f"run {opt.get('label', opt['name'])}, seed {spec['seed']}: {err}") from None


def execute(spec: dict, base: str | Path) -> dict:
    """Run one campaign run through :func:`mtpfit.fit` and return its result record (not written).

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
    train, valid = _datasets(json.dumps(spec["dataset"], sort_keys=True), str(base), int(spec["seed"]))
    config = training_config(spec, train, valid)
    start = time.perf_counter()
    try:
        run = fit(config)
    except FloatingPointError as err:
        # a diverged run is a result of the study (its catastrophic outliers), not a failure of the campaign
        return {"spec": spec,
                "result": {"wall_time_s": time.perf_counter() - start, "passes": None, "nit": None,
                           "final_loss": None, "success": False, "diverged": True, "message": f"diverged: {err}",
                           "start": config.starting, "errors": {"train": {}, "validation": {}}},
                "history": [], "curve": [], "machine": _machine()}
    r, name = run.result, config.optimizer
    clean = lambda v: None if isinstance(v, float) and not np.isfinite(v) else v  # noqa: E731
    return {"spec": spec,
            "result": {"wall_time_s": float(run.wall_time), "passes": float(r.nfev),
                       "passes_summary": passes_summary(r, name), "nit": int(r.nit), "final_loss": float(r.fun),
                       "start": run.start, "start_s": run.start_seconds,
                       "success": bool(r.success), "diverged": False, "message": str(r.message),
                       "errors": {part: {k: clean(v) for k, v in run.errors[part]["all"].items()}
                                  for part in ("train", "validation")}},
            "history": [float(row.get("batch_loss", row.get("loss"))) for row in run.history],
            "curve": validation_curve(run.history), "machine": _machine()}


def validation_curve(history: list[dict]) -> list[list]:
    """The validated rows of a run's history as [seconds, validation EPA RMSE (eV/atom), force RMSE (eV/Å)].

    Seconds of training from the start of the run: a hybrid's second-stage rows count from the end of its first
    stage (its last row's ``elapsed_s``). Errors the validation set has no labels of are None.
    """
    curve, stage_end = [], {}
    for row in history:
        if row.get("elapsed_s") is not None:
            stage_end[row.get("stage", 1)] = float(row["elapsed_s"])
    for row in history:
        if "val_epa_rmse" not in row or row.get("elapsed_s") is None:
            continue
        offset = stage_end.get(1, 0.0) if row.get("stage") == 2 else 0.0
        curve.append([offset + float(row["elapsed_s"]), row["val_epa_rmse"], row["val_force_rmse"]])
    return curve


def _machine() -> dict:
    return {"mtpfit": __version__, "host": platform.node(), "cpu_count": os.cpu_count(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}


def run_and_save(spec: dict, base: str, path: str) -> dict:
    """:func:`execute` and write the record to ``path`` atomically, with its checksum
    (:func:`~mtpfit.bench.results.write_result`); returns a one-line summary."""
    record = execute(spec, base)
    target = write_result(path, record)
    v = record["result"]["errors"]["validation"]
    return {"path": str(target), "label": spec["optimizer"].get("label", spec["optimizer"]["name"]),
            "seed": spec["seed"], "wall_time_s": record["result"]["wall_time_s"], "val_epa_rmse": v.get("epa_rmse"),
            "val_force_rmse": v.get("force_rmse"), "message": record["result"]["message"]}
