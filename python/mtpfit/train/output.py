"""Files a training run leaves behind: the potential, metrics.json, history.csv."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .scipy_trainer import TrainingRun

__all__ = ["write_run"]


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
