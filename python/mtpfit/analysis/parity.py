"""Pictures of a fit: parity plots (DFT against MTP) and the loss and validation curves of a training run.

Drawn with matplotlib's object API on an Agg canvas: no display and no pyplot state, so it works in batch jobs.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset
from ..metrics import EV_PER_A3_TO_GPA, error_metrics
from ..objective.objective import Predictions

__all__ = ["parity_plot", "parity_figure", "parity_statistics", "loss_curve_plot", "loss_curve_figure",
           "history_series"]

_QUANTITIES = {"energy": ("energy per atom", "eV/atom", "meV/atom"),
               "forces": ("force components", "eV/Å", "eV/Å"),
               "stress": ("stress components σ = −S/V", "GPa", "GPa")}
_NO_DATA = {"energy": "no energy labels", "forces": "no force labels",
            "stress": "no stress labels\n(a stress needs a 3D-periodic cell)"}
# upper triangle of the symmetric stress: each independent component once in the picture
_UPPER = np.triu_indices(3)


def parity_statistics(dataset: Dataset, predictions: Predictions) -> dict[str, dict]:
    """The numbers a parity plot's legend shows for one set, in the plot's units.

    RMSE and MAE are :func:`mtpfit.metrics.error_metrics`' over the whole set (``"all"``): energy
    ``epa_rmse``/``epa_mae`` in meV/atom; forces per Cartesian component, ``force_rmse`` and
    ``force_mae_component`` in eV/Å; stress ``stress_rmse_gpa`` (per component of σ = −S/V, 3D-periodic cells)
    in GPa and the mean absolute component error of σ over the same nine components.

    Parameters
    ----------
    dataset : Dataset
    predictions : Predictions
        From :meth:`mtpfit.Objective.predict` on ``dataset``.

    Returns
    -------
    dict
        ``{"energy": s, "forces": s, "stress": s}``, each ``s`` with ``rmse``, ``mae`` (``None`` when nothing is
        labelled), ``n`` (labelled configurations, labelled force components, configurations with a stress and a
        volume) and ``unit``.
    """
    _check(dataset, predictions)
    m = error_metrics(dataset, predictions)["all"]
    sigma = _sigma_pairs(dataset, predictions)
    errors = np.abs(sigma[1] - sigma[0])
    return {"energy": {"rmse": _scaled(m["epa_rmse"], 1e3), "mae": _scaled(m["epa_mae"], 1e3),
                       "n": m["n_energies"], "unit": "meV/atom"},
            "forces": {"rmse": _scaled(m["force_rmse"]), "mae": _scaled(m["force_mae_component"]),
                       "n": 3 * m["n_forces"], "unit": "eV/Å"},
            "stress": {"rmse": _scaled(m["stress_rmse_gpa"]), "mae": float(errors.mean()) if errors.size else None,
                       "n": len(sigma[0]), "unit": "GPa"}}


def _scaled(value, factor: float = 1.0) -> float | None:
    # error_metrics gives None (NaN in older versions) where nothing is labelled
    return None if value is None or not math.isfinite(value) else factor * value


def parity_figure(sets: Mapping[str, tuple[Dataset, Predictions]]):
    """The parity figure of :func:`parity_plot`, for saving or further drawing.

    Returns
    -------
    matplotlib.figure.Figure
        Three axes: energy per atom, force components, stress components (see :func:`parity_plot`).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not sets:
        raise ValueError("parity plot: no sets to draw (sets maps a label to (dataset, predictions))")
    figure = Figure(figsize=(15, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    points = {label: _points(dataset, predictions) for label, (dataset, predictions) in sets.items()}
    statistics = {label: parity_statistics(dataset, predictions) for label, (dataset, predictions) in sets.items()}
    for ax, quantity in zip(axes, _QUANTITIES):
        title, unit, legend_unit = _QUANTITIES[quantity]
        ax.set_title(title)
        drawn = [(label, *points[label][quantity]) for label in sets if points[label][quantity][0].size]
        if not drawn:
            ax.text(0.5, 0.5, _NO_DATA[quantity], ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for colour, (label, dft, mtp) in enumerate(drawn):
            s = statistics[label][quantity]
            # rasterized: a million force points stay one image in PDF/SVG output too
            ax.plot(dft, mtp, linestyle="none", marker="." if dft.size < 10**5 else ",", markersize=3,
                    alpha=0.6, color=f"C{colour}", rasterized=True,
                    label=f"{label}: RMSE {s['rmse']:.3g}, MAE {s['mae']:.3g} {legend_unit}")
        low = min(min(d.min(), m.min()) for _, d, m in drawn)
        high = max(max(d.max(), m.max()) for _, d, m in drawn)
        pad = 0.05 * (high - low) or 0.05 * max(abs(high), 1.0)
        limits = (low - pad, high + pad)
        ax.plot(limits, limits, color="black", linewidth=0.8, zorder=0)
        ax.set_xlim(limits)
        ax.set_ylim(limits)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(f"DFT ({unit})")
        ax.set_ylabel(f"MTP ({unit})")
        ax.legend(loc="upper left", fontsize="small", markerscale=4)
    return figure


def parity_plot(path: str | os.PathLike, sets: Mapping[str, tuple[Dataset, Predictions]], dpi: int = 120) -> Path:
    """Draw DFT against MTP for energies per atom, force components and stress components.

    One figure, three panels, DFT on x and the MTP on y with the diagonal, one colour per set; the legend gives
    each set's RMSE and MAE (:func:`parity_statistics`: meV/atom, eV/Å per component, GPa). Only labelled
    values are drawn (force components under the force mask; stresses of configurations with a stress label
    and a 3D-periodic cell, σ = −S/V, the six independent components); a panel without any says so instead.

    Parameters
    ----------
    path : str or os.PathLike
        Image file, replaced atomically; its ending picks the format (``.png``, ``.pdf``, ``.svg``, …).
    sets : mapping
        Label (``"train"``, ``"validation"``) → (dataset, predictions on it), in drawing order.
    dpi : int
        Resolution of raster output.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If ``sets`` is empty, predictions do not fit their dataset, or the file ending is no image format
        matplotlib writes.
    """
    return _save(parity_figure(sets), Path(path), dpi)


def _points(dataset: Dataset, predictions: Predictions) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(DFT, MTP) value arrays of each quantity, in the plot's units, labelled values only."""
    _check(dataset, predictions)
    labelled = [k for k, c in enumerate(dataset) if c.energy is not None]
    energy = (np.array([dataset[k].energy / dataset[k].n_atoms for k in labelled]),
              np.array([predictions.energies[k] / dataset[k].n_atoms for k in labelled]))
    dft, mtp = [], []
    for k, c in enumerate(dataset):
        if c.forces is not None:
            mask = c.labelled_forces
            dft.append(c.forces[mask].ravel())
            mtp.append(predictions.forces_of(k)[mask].ravel())
    forces = (np.concatenate(dft), np.concatenate(mtp)) if dft else (np.zeros(0), np.zeros(0))
    sigma = _sigma_pairs(dataset, predictions)
    stress = (sigma[0][:, _UPPER[0], _UPPER[1]].ravel(), sigma[1][:, _UPPER[0], _UPPER[1]].ravel())
    return {"energy": energy, "forces": forces, "stress": stress}


def _check(dataset: Dataset, predictions: Predictions) -> None:
    atoms = [c.n_atoms for c in dataset]
    if len(predictions.energies) != len(dataset) or not np.array_equal(np.diff(predictions.offsets), atoms):
        raise ValueError(f"{dataset.name}: the predictions are of {len(predictions.energies)} configurations and "
                         f"{len(predictions.forces)} atoms, the dataset has {len(dataset)} and {sum(atoms)}")


def _sigma_pairs(dataset: Dataset, predictions: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """σ = −S/V in GPa, DFT and MTP, shape (n, 3, 3), of the configurations with a stress label and a volume."""
    chosen = [k for k, c in enumerate(dataset) if c.plus_stress is not None and c.volume]
    scale = [-EV_PER_A3_TO_GPA / dataset[k].volume for k in chosen]
    return (np.array([s * dataset[k].plus_stress for s, k in zip(scale, chosen)]).reshape(-1, 3, 3),
            np.array([s * predictions.stresses[k] for s, k in zip(scale, chosen)]).reshape(-1, 3, 3))


# ----------------------------------------------------------------------------- loss curves

# history columns of the loss panel (column → legend label) and of the error panel (column → quantity, set)
_LOSS_COLUMNS = {"loss": "training loss (full batch)", "batch_loss": "mini-batch loss (×K/B)",
                 "epoch_loss": "epoch mean of the mini-batch losses"}
_ERROR_COLUMNS = {"train_epa_rmse": ("energy", "train"), "val_epa_rmse": ("energy", "validation"),
                  "train_force_rmse": ("forces", "train"), "val_force_rmse": ("forces", "validation")}


def history_series(history: Sequence[Mapping] | str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The curves of a training history, as :func:`loss_curve_plot` draws them.

    Rows are numbered 1, 2, … in order, whatever their kind: a full-batch run's iterations, a mini-batch run's
    steps, or a hybrid's stage-1 steps followed by its stage-2 iterations, so that the stages line up one after
    the other.

    Parameters
    ----------
    history : sequence of dict, or path
        :attr:`mtpfit.train.TrainingRun.history` (or a mini-batch result's ``history``), or the run's
        ``history.csv``. Missing, empty and non-numeric values are skipped.

    Returns
    -------
    dict
        Column → (x, y) arrays of the rows where the column has a finite value: ``loss``, ``batch_loss``,
        ``epoch_loss`` (training loss), ``train_epa_rmse``, ``val_epa_rmse`` (eV/atom), ``train_force_rmse``,
        ``val_force_rmse`` (eV/Å per component), as far as the history has them; ``stage_starts``: (x of the
        first row of every stage after the first, stage numbers).
    """
    rows = _rows(history)
    x = np.arange(1, len(rows) + 1, dtype=float)
    series = {}
    for column in (*_LOSS_COLUMNS, *_ERROR_COLUMNS):
        y = np.array([_number(row.get(column)) for row in rows])
        if np.isfinite(y).any():
            series[column] = (x[np.isfinite(y)], y[np.isfinite(y)])
    stages = np.array([_number(row.get("stage")) for row in rows])
    starts = np.flatnonzero(np.isfinite(stages[1:]) & (stages[1:] != stages[:-1])) + 1
    series["stage_starts"] = (x[starts], stages[starts])
    return series


def loss_curve_figure(history: Sequence[Mapping] | str | os.PathLike, errors: Mapping | None = None):
    """The figure of :func:`loss_curve_plot`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = _rows(history)
    series = history_series(rows)
    final = _final_errors(errors)
    has_errors = bool(final) or any(c in series for c in _ERROR_COLUMNS)
    figure = Figure(figsize=(9, 7 if has_errors else 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2 if has_errors else 1, 1, sharex=True, squeeze=False)[:, 0]
    loss_ax = axes[0]
    drawn = False
    for column, label in _LOSS_COLUMNS.items():
        if column in series:
            x, y = _positive(*series[column])
            if x.size:
                style = {"batch_loss": dict(linewidth=0.6, alpha=0.5),
                         "epoch_loss": dict(marker="o", markersize=3)}.get(column, {})
                loss_ax.plot(x, y, label=label, **style)
                drawn = True
    if drawn:
        loss_ax.set_yscale("log")
        loss_ax.legend(fontsize="small")
    else:
        loss_ax.text(0.5, 0.5, "no iterations recorded", ha="center", va="center", transform=loss_ax.transAxes)
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("training loss")
    if has_errors:
        _draw_errors(axes[1], series, final, max(len(rows), 1))
    for ax in axes:
        for x, stage in zip(*series["stage_starts"]):
            ax.axvline(x - 0.5, color="grey", linestyle=":", linewidth=1)
            ax.text(x - 0.5, 1.0, f" stage {stage:g}", transform=ax.get_xaxis_transform(), va="top",
                    fontsize="small", color="grey")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel(_x_label(rows))
    return figure


def loss_curve_plot(path: str | os.PathLike, history: Sequence[Mapping] | str | os.PathLike,
                    errors: Mapping | None = None, dpi: int = 120) -> Path:
    """Draw the training loss against the iteration and, where there are any, the training and validation errors.

    Top panel: the training loss on a log scale: a full-batch run's ``loss``, a mini-batch run's ``batch_loss``
    (the K/B-scaled estimate of the full loss, thin) and ``epoch_loss``; a hybrid's stages one after the other,
    the start of each marked. Bottom panel (when the history logs errors or ``errors`` is given): EPA RMSE
    (meV/atom, left axis) and force RMSE per component (eV/Å, right axis), validation solid and training dashed,
    and the run's final errors at the last row (validation ★, training ✚). Non-positive or missing losses are
    left out.

    Parameters
    ----------
    path : str or os.PathLike
        Image file, replaced atomically; its ending picks the format.
    history : sequence of dict, or path
        As :func:`history_series` takes it.
    errors : dict, optional
        :attr:`mtpfit.train.TrainingRun.errors` (``{"train": …, "validation": …}`` of
        :func:`mtpfit.metrics.error_metrics`): a full-batch run computes its validation errors only at the end.
    dpi : int
        Resolution of raster output.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If the file ending is no image format matplotlib writes.
    OSError
        If ``history`` is a path that cannot be read.
    """
    return _save(loss_curve_figure(history, errors), Path(path), dpi)


def _save(figure, path: Path, dpi: int) -> Path:
    """Save through a temporary file (a kill leaves the previous picture or the new one), in the format of the
    file ending (PNG without one)."""
    format = path.suffix.lstrip(".").lower() or "png"
    supported = figure.canvas.get_supported_filetypes()
    if format not in supported:
        raise ValueError(f"{path}: matplotlib writes no {format!r} images; use one of {', '.join(sorted(supported))}")
    tmp = path.with_name(path.name + ".tmp")
    try:
        figure.savefig(tmp, dpi=dpi, format=format)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _draw_errors(ax, series: dict, final: dict, last: int) -> None:
    force_ax = ax.twinx()
    scale = {"energy": 1e3, "forces": 1.0}
    target = {"energy": ax, "forces": force_ax}
    colour = {"energy": "C0", "forces": "C3"}
    lines = []
    for column, (quantity, kind) in _ERROR_COLUMNS.items():
        if column in series:
            x, y = _positive(series[column][0], scale[quantity] * series[column][1])
            lines += target[quantity].plot(x, y, color=colour[quantity], marker="." if len(x) < 200 else None,
                                           linestyle="-" if kind == "validation" else "--",
                                           label=f"{kind} {'EPA' if quantity == 'energy' else 'force'} RMSE")
    for (kind, quantity), value in final.items():
        if math.isfinite(value) and value > 0:
            lines += target[quantity].plot([last], [scale[quantity] * value], linestyle="none", color=colour[quantity],
                                           marker="*" if kind == "validation" else "P", markersize=10,
                                           label=f"final {kind} {'EPA' if quantity == 'energy' else 'force'} RMSE")
    for axis, quantity, unit in ((ax, "energy", "EPA RMSE (meV/atom)"), (force_ax, "forces", "force RMSE (eV/Å)")):
        axis.set_ylabel(unit, color=colour[quantity])
        if axis.lines:
            axis.set_yscale("log")
    ax.set_title("errors")
    if lines:
        ax.legend(lines, [line.get_label() for line in lines], fontsize="small")


def _x_label(rows: Sequence[Mapping]) -> str:
    """What the rows count: a full-batch run's iterations, a mini-batch run's steps, or a hybrid's both."""
    kinds = [kind for kind, key in (("mini-batch step", "step"), ("iteration", "iteration"))
             if any(math.isfinite(_number(row.get(key))) for row in rows)]
    return ", then ".join(kinds) + (" (stages one after the other)" if len(kinds) > 1 else "") if kinds else "row"


def _final_errors(errors: Mapping | None) -> dict:
    """(kind, quantity) → the run's final RMSE over the whole set, from ``TrainingRun.errors``."""
    out = {}
    for kind in ("train", "validation"):
        whole = (errors or {}).get(kind, {}).get("all")
        if whole:
            out[(kind, "energy")] = _number(whole.get("epa_rmse"))
            out[(kind, "forces")] = _number(whole.get("force_rmse"))
    return {key: value for key, value in out.items() if math.isfinite(value)}


def _rows(history) -> list[Mapping]:
    if isinstance(history, (str, os.PathLike)):
        with open(history, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return list(history)


def _number(value) -> float:
    """A finite or NaN float of a history cell (None, "" and text that is no number → NaN)."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _positive(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(y) & (y > 0)   # what a log axis can show
    return x[keep], y[keep]
