"""Files a training run leaves behind: the potential, metrics.json, history.csv."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..optim.least_squares import LEAST_SQUARES_METHODS
from .scipy_trainer import TrainingRun

__all__ = ["write_run", "passes_summary"]


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
        LM and GN: "N loss passes, M JᵀWJ builds" (their ``njev`` counts JᵀWJ builds); varpro and the native BFGS:
        "N loss+gradient passes, M linear solves" (exact re-solves of the species and moment coefficients);
        scipy's methods and the mini-batch zoo: "N loss+gradient passes" (scipy's own ``njev`` counts gradient
        evaluations, the same passes; mini-batch passes are full-pass equivalents). A hybrid: both stages,
        "FIRST: …; SECOND: …".
    """
    first, plus, second = method.partition("+")
    if plus and "stages" in result:
        return "; ".join(f"{name}: {passes_summary(stage, name)}" for name, stage in zip((first, second),
                                                                                          result.stages))
    if method in LEAST_SQUARES_METHODS:
        return f"{result.nfev:g} loss passes, {result.get('njev', 0)} JᵀWJ builds"
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
    return value


def write_run(run: TrainingRun, folder: str | Path, settings: dict) -> dict[str, Path]:
    """Write ``trained.mtp``, ``metrics.json`` and ``history.csv`` into ``folder``.

    Returns
    -------
    dict
        Paths of the written files by kind.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"potential": folder / "trained.mtp", "metrics": folder / "metrics.json",
             "history": folder / "history.csv"}
    run.mtp.write(paths["potential"])
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
    paths["metrics"].write_text(json.dumps(_clean(metrics), indent=2, ensure_ascii=False))
    columns: dict[str, None] = {}
    for row in run.history:
        columns.update(dict.fromkeys(row))
    with open(paths["history"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(run.history)
    return paths
