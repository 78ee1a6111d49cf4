"""Files a training run leaves behind (the potential, metrics.json, history.csv, its checkpoints), and the checks
of its output folder before it starts."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from ..optim.least_squares import LEAST_SQUARES_METHODS
from .checkpoint import write_atomically, write_text_atomically, writes_files
from .scipy_trainer import TrainingRun

__all__ = ["write_run", "passes_summary", "RUN_FILES", "check_output", "start_run"]

#: What a run writes into its output folder: the settings it started with, the results, the checkpoints
#: (``checkpoint.*`` of a single trainer, ``stage1.*``/``stage2.*`` of a hybrid; each ``.npz`` with its ``.mtp``, or
#: ``.etn.json`` for an ETN), and the files for judging the fit (:func:`mtpfit.fit`).
RUN_FILES = ("run.json", "trained.mtp", "trained.etn.json", "metrics.json", "history.csv", "checkpoint.npz",
             "checkpoint.mtp", "checkpoint.etn.json", "stage1.npz", "stage1.mtp", "stage1.etn.json", "stage2.npz",
             "stage2.mtp", "stage2.etn.json", "split.json", "predictions_train.extxyz",
             "predictions_validation.extxyz", "predictions_train.cfg", "predictions_validation.cfg", "parity.png",
             "loss.png", "config.toml")

#: Settings a resumed run may change: budgets, reporting and resources (a different thread count continues the
#: run, but not bit for bit).
RESUMABLE_CHANGES = frozenset({"max_iter", "epochs", "refine_iter", "max_seconds", "log_every", "quiet", "threads",
                               "checkpoint_every", "resume", "overwrite", "output", "refine_seconds"})


def passes_summary(result, method: str) -> str:
    """What a run's passes over the training set were, named by kind, e.g. ``"12 loss passes, 5 JᵀWJ builds"``.

    Parameters
    ----------
    result : OptimizeResult
        The trainer's result (``nfev``; ``njev`` for LM/GN, ``n_resolves`` for the native BFGS; a hybrid's
        ``stages``, the results of its two stages).
    method : str
        The trainer's name as given to ``mtpfit train --optimizer`` (``FIRST+SECOND`` for a hybrid).

    Returns
    -------
    str
        LM, GN and ALS: "N loss passes, M JᵀWJ builds" (their ``njev`` counts JᵀWJ builds); varpro-LM: "M JᵀWJ
        builds, K linear solves"; varpro and the native BFGS:
        "N loss+gradient passes, M linear solves" (exact re-solves of the species and moment coefficients);
        scipy's methods and the mini-batch zoo: "N loss+gradient passes" (scipy's own ``njev`` counts gradient
        evaluations, the same passes; mini-batch passes are full-pass equivalents). A hybrid: both stages,
        "FIRST: …; SECOND: …".
    """
    first, plus, second = method.partition("+")
    if plus and "stages" in result:
        return "; ".join(f"{name}: {passes_summary(stage, name)}" for name, stage in zip((first, second),
                                                                                          result.stages))
    if method in LEAST_SQUARES_METHODS or method == "als":
        return f"{result.nfev:g} loss passes, {result.get('njev', 0)} JᵀWJ builds"
    if method == "varpro-LM":
        return f"{result.get('njev', 0)} JᵀWJ builds, {result.n_resolves} linear solves"
    text = f"{result.nfev:g} loss+gradient passes"
    if "n_resolves" in result:
        text += f", {result.n_resolves} linear solves"
    return text


def _clean(value):
    # JSON has no NaN; unavailable metrics are written as null
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def check_output(folder: str | Path, resume: bool, overwrite: bool, checkpoint: str) -> None:
    """Check the output folder of a run before anything is loaded or trained.

    Parameters
    ----------
    folder : path
        The output folder (``--output``); it need not exist.
    resume, overwrite : bool
        ``--resume``: the folder must hold the checkpoint ``checkpoint``. ``--overwrite``: an earlier run there is
        replaced (by :func:`start_run`). Neither: the folder must hold none of :data:`RUN_FILES`.
    checkpoint : str
        Name of the checkpoint file a resume continues from (``checkpoint.npz``, a hybrid's ``stage1.npz``).

    Raises
    ------
    ValueError
        When the folder is a file, one of the run's files is a folder, the nearest existing parent is not a
        writable folder, ``resume`` and ``overwrite`` are both set, there is nothing to resume, or an earlier
        run would be overwritten.
    """
    folder = Path(folder)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output {folder} is a file, not a folder")
    for name in RUN_FILES:
        if (folder / name).is_dir():
            raise ValueError(f"{folder / name} is a folder: the run writes a file there")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--output {folder}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--output {folder}: {parent} is not writable")
    found = [name for name in RUN_FILES if (folder / name).exists()]
    if resume and checkpoint not in found:
        raise ValueError(f"--resume: {folder / checkpoint} does not exist, there is nothing to resume"
                         + (f" ({folder} holds {', '.join(found)})" if found else ""))
    if not resume and not overwrite and found:
        raise ValueError(f"{folder} holds an earlier run ({', '.join(found)}): pass --resume to continue it or "
                         "--overwrite to replace it, or choose another --output")


def start_run(folder: str | Path, settings: dict, resume: bool) -> None:
    """Create the output folder and record the run's settings in ``run.json``; for a resume, check them instead
    against those the run started with. A fresh run first removes the files of an earlier one (``--overwrite``,
    checked by :func:`check_output`).

    Raises
    ------
    ValueError
        When the folder cannot be written, or a resumed run's settings differ from the saved ones in more than
        :data:`RESUMABLE_CHANGES` (naming them).
    """
    folder = Path(folder)
    settings = json.loads(json.dumps(settings))
    record = folder / "run.json"
    if resume:
        try:
            saved = json.loads(record.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{record}: cannot read the settings of the run to resume ({err})") from None
        keys = (set(saved) | set(settings)) - RESUMABLE_CHANGES
        differs = sorted(k for k in keys if saved.get(k) != settings.get(k))
        if differs:
            text = ", ".join(f"{k} (was {saved.get(k)!r}, now {settings.get(k)!r})" for k in differs)
            raise ValueError(f"--resume: {folder} holds a run with other settings: {text}; only "
                             f"{', '.join(sorted(RESUMABLE_CHANGES - {'resume', 'overwrite'}))} may "
                             "change")
        return
    if not writes_files():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            for path in (folder / name, folder / f"{name}.tmp"):
                path.unlink(missing_ok=True)
        write_text_atomically(record, json.dumps(settings, indent=2, ensure_ascii=False))
    except OSError as err:
        raise ValueError(f"--output {folder}: cannot write there ({err})") from None


def write_run(run: TrainingRun, folder: str | Path, settings: dict) -> dict[str, Path]:
    """Write ``trained.mtp`` (an ETN: ``trained.etn.json``), ``metrics.json`` and ``history.csv`` into ``folder``,
    each atomically (a kill leaves the previous file or the new one).

    Returns
    -------
    dict
        Paths of the written files by kind.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"potential": folder / f"trained{run.mtp.file_suffix}", "metrics": folder / "metrics.json",
             "history": folder / "history.csv"}
    write_atomically(run.mtp, paths["potential"])
    r = run.result
    metrics = {
        "settings": settings,
        "optimizer": {"nit": int(r.nit), "nfev": float(r.nfev), "success": bool(r.success),
                      "message": str(r.message), "final_loss": float(r.fun), "wall_time_s": run.wall_time,
                      "interrupted": run.interrupted},
        "errors": run.errors,
        "units": {"epa": "eV/atom", "force": "eV/Å (per-atom vector norm)", "stress_rmse": "eV (PlusStress)",
                  "stress_rmse_gpa": "GPa"},
    }
    write_text_atomically(paths["metrics"], json.dumps(_clean(metrics), indent=2, ensure_ascii=False))
    columns: dict[str, None] = {}
    for row in run.history:
        columns.update(dict.fromkeys(row))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(run.history)
    write_text_atomically(paths["history"], table.getvalue())
    return paths
