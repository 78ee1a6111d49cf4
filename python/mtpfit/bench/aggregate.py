"""Result files → a table of runs → statistics per cell (dataset × model × optimizer configuration)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .results import RESULT_NAME, DamagedResultWarning, ResultFileError, read_result

__all__ = ["load_results", "summarize", "markdown_table", "METRICS"]

#: Columns summarised per cell, with the unit they are reported in.
METRICS = {"val_epa_rmse": "meV/atom", "val_epa_mae": "meV/atom", "val_force_rmse": "eV/Å", "val_stress_rmse": "GPa",
           "train_epa_rmse": "meV/atom",
           "train_force_rmse": "eV/Å", "wall_time_s": "s", "passes": "", "final_loss": ""}


def load_results(folder: str | Path) -> pd.DataFrame:
    """One row per result file under ``folder`` (recursively): the cell keys, the seed, every metric
    (energies in meV/atom, forces in eV/Å per component as MLIP-2 prints them, stresses in GPa per component; NaN
    where a set has no stresses), what the passes were (``passes_summary``) and the file it came from.

    Result files are the JSON files named by a run's hash (other JSON files, such as checkpoints, are not
    read). A damaged one is left out with a :class:`~mtpfit.bench.results.DamagedResultWarning` naming it; the
    frame's ``attrs["damaged"]`` maps each such path to what is wrong with it.
    """
    rows, damaged = [], {}
    for path in sorted(p for p in Path(folder).rglob("*.json") if RESULT_NAME.fullmatch(p.name)):
        try:
            record = read_result(path)
        except ResultFileError as err:
            warnings.warn(f"{err}; left out of the results (`mtpfit bench` runs it again)", DamagedResultWarning,
                          stacklevel=2)
            damaged[str(path)] = err.reason
            continue
        spec, result = record["spec"], record["result"]
        opt = spec["optimizer"]
        v, t = result["errors"]["validation"], result["errors"]["train"]
        rows.append({"campaign": spec["campaign"], "dataset": spec["dataset"]["name"], "model": spec["model"]["name"],
                     "label": opt.get("label", opt["name"]), "optimizer": opt["name"],
                     "swept": json.dumps(opt.get("swept", {}), sort_keys=True), "seed": spec["seed"],
                     "val_epa_rmse": _number(v, "epa_rmse", 1e3), "val_epa_mae": _number(v, "epa_mae", 1e3),
                     "val_force_rmse": _number(v, "force_rmse"), "val_stress_rmse": _number(v, "stress_rmse_gpa"),
                     "train_epa_rmse": _number(t, "epa_rmse", 1e3), "train_force_rmse": _number(t, "force_rmse"),
                     "wall_time_s": result["wall_time_s"], "passes": _loss_passes(result), "nit": result["nit"],
                     "passes_summary": result.get("passes_summary"),
                     "final_loss": np.nan if result["final_loss"] is None else result["final_loss"],
                     "success": result["success"], "diverged": bool(result.get("diverged", False)),
                     "message": result["message"],
                     "history": record["history"], "curve": record.get("curve", []),
                     "finished": record.get("machine", {}).get("finished"),
                     "file": str(path)})
    frame = pd.DataFrame(rows)
    frame.attrs["damaged"] = damaged
    return frame


def _loss_passes(result: dict) -> float:
    """The run's loss+gradient passes over the training set; NaN for a trainer that iterated without any (varpro-LM,
    whose passes are JᵀWJ builds and linear solves, named in ``passes_summary``), whose 0 would read as free."""
    if result["passes"] is None or (result["passes"] == 0 and result["nit"]):
        return np.nan
    return result["passes"]


def _number(metrics: dict, key: str, scale: float = 1.0) -> float:
    """metrics[key] × scale, NaN where the run has no such value (a diverged run, a set without stresses)."""
    return np.nan if metrics.get(key) is None else scale * metrics[key]


def _std(values: pd.Series) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell: n, and mean, median, std, min, max of every metric over the runs that did not diverge (NaN when
    none did: a diverged run's wall time is when it blew up, not what a result cost), plus ``outliers``: runs whose
    validation EPA RMSE exceeds 5× the cell median (the study's "catastrophic" runs), and ``diverged``: runs stopped
    by a non-finite loss."""
    keys = ["campaign", "dataset", "model", "label", "swept"]
    rows = []
    for cell, group in runs.groupby(keys, sort=False):
        row = dict(zip(keys, cell), n=len(group))
        finished = group[~group["diverged"].astype(bool)]
        for metric in METRICS:
            values = finished[metric].astype(float)
            # blown-up runs (finite but ~1e100) overflow the squares of the std: it is then reported as inf
            row.update({f"{metric}_mean": values.mean(), f"{metric}_median": values.median(),
                        f"{metric}_std": _std(values),
                        f"{metric}_min": values.min(), f"{metric}_max": values.max()})
        median = group["val_epa_rmse"].median()
        row["outliers"] = int((group["val_epa_rmse"] > 5 * median).sum())
        row["diverged"] = int(group["diverged"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame, columns: dict[str, str], digits: dict[str, int] | None = None) -> str:
    """A Markdown table of ``frame``'s columns (``{column: header}``), numbers rounded per ``digits``."""
    digits = digits or {}
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        cells = []
        for col in columns:
            value = row[col]
            if isinstance(value, (float, np.floating)):
                cells.append("—" if not np.isfinite(value) else f"{value:.{digits.get(col, 4)}g}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
