"""Validation and training errors in the reference code's conventions (MTP_SPEC §8)."""
from __future__ import annotations

import math
import warnings

import numpy as np

from .data.dataset import Dataset
from .objective.objective import Predictions

__all__ = ["error_metrics", "format_errors", "MissingLabelWarning", "EV_PER_A3_TO_GPA"]

#: 1 eV/Å³ in GPa.
EV_PER_A3_TO_GPA = 160.21766208

# Configurations named in a MissingLabelWarning; the rest are counted.
_NAMED = 3
# quantity → (what a configuration lacks, the adjective of its errors)
_WORDS = {"energy": ("energy label", "energy"), "forces": ("force labels", "force"),
          "stress": ("stress label", "stress")}


class MissingLabelWarning(UserWarning):
    """Some configurations of a set have no label of a quantity, so its errors are over the others only.

    Attributes
    ----------
    quantity : str
        ``"energy"``, ``"forces"`` or ``"stress"``.
    missing, total : int
        Configurations without that label, and all configurations of the set.
    """

    def __init__(self, message: str, quantity: str = "", missing: int = 0, total: int = 0):
        super().__init__(message)
        self.quantity, self.missing, self.total = quantity, missing, total


def _rms(values) -> float | None:
    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else None


def _summary(epa, dforce, dstress, dsigma, counts: dict) -> dict:
    """RMSE/MAE of per-configuration EPA errors, force errors and stress errors; None where nothing is labelled."""
    out = dict(counts)
    out["epa_rmse"] = _rms(epa)
    out["epa_mae"] = float(np.mean(np.abs(epa))) if len(epa) else None
    keys = ("force_rmse_vector", "force_mae_vector", "force_rmse", "force_mae_component", "force_mae_mlip")
    if len(dforce):
        norm = np.linalg.norm(dforce, axis=1)
        out["force_rmse_vector"] = float(np.sqrt(np.mean(norm ** 2)))
        out["force_mae_vector"] = float(np.mean(norm))
        out["force_rmse"] = out["force_rmse_vector"] / math.sqrt(3.0)
        out["force_mae_component"] = float(np.mean(np.abs(dforce)))
        out["force_mae_mlip"] = float(np.sum(norm) / dforce.size)
    else:
        out.update(dict.fromkeys(keys))
    out["stress_rmse"] = _rms(dstress)
    out["stress_rmse_component"] = None if out["stress_rmse"] is None else out["stress_rmse"] / 3.0
    out["stress_rmse_gpa"] = None if not len(dsigma) else _rms(dsigma) / 3.0
    return out


def _warn_missing(dataset: Dataset, quantity: str, unlabelled: list[int]) -> None:
    """A :class:`MissingLabelWarning` when some, not all, configurations lack the label ``quantity``."""
    if not 0 < len(unlabelled) < len(dataset):
        return
    named = "; ".join(str(dataset[k].source) for k in unlabelled[:_NAMED])
    more = f" and {len(unlabelled) - _NAMED} more" if len(unlabelled) > _NAMED else ""
    label, adjective = _WORDS[quantity]
    warnings.warn(MissingLabelWarning(
        f"{dataset.name}: {len(unlabelled)} of {len(dataset)} configurations have no {label} ({named}{more}); "
        f"the {adjective} errors are over the other {len(dataset) - len(unlabelled)} only",
        quantity, len(unlabelled), len(dataset)), stacklevel=3)


def error_metrics(dataset: Dataset, predictions: Predictions) -> dict[str, dict]:
    """Errors of ``predictions`` against the labels of ``dataset``, overall and per group.

    Parameters
    ----------
    dataset : Dataset
        K configurations with labels (unlabelled quantities are skipped, see Warns).
    predictions : Predictions
        From :meth:`mtpfit.Objective.predict` on the same dataset.

    Returns
    -------
    dict
        ``{"all": m, "<group>": m, …}``; each ``m`` holds the counts ``n_configurations``, ``n_atoms``,
        ``n_energies`` (configurations with an energy), ``n_force_configurations`` (with at least one labelled
        force), ``n_forces`` (atoms with a labelled force), ``n_stresses`` (configurations with a stress), and

        - ``epa_rmse``, ``epa_mae``: eV/atom, over configurations of (E − E*)/N;
        - ``force_rmse``: eV/Å, per Cartesian component, sqrt(Σ_i |ΔF_i|² / 3N). This is the
          figure MLIP-2 prints as the forces' "RMS absolute difference" and the one
          ``BENCHMARKS.md`` tabulates;
        - ``force_rmse_vector`` = √3 · ``force_rmse``: per atom on the vector norm |ΔF_i|;
        - ``force_mae_vector`` (mean |ΔF_i|), ``force_mae_component`` (mean |ΔF_ic|) and
          ``force_mae_mlip`` = Σ_i |ΔF_i| / 3N, what MLIP-2 prints as "Average absolute difference";
        - ``stress_rmse``: eV, over configurations of ‖ΔS‖_F of the PlusStress;
          ``stress_rmse_component`` = ``stress_rmse``/3 (MLIP-2's "RMS absolute difference" in eV);
          ``stress_rmse_gpa``: the same per component for σ = −S/V in GPa (periodic cells only).

        A quantity no configuration of the set is labelled with has ``None`` for its errors (``null`` in
        JSON), not NaN.

    Warns
    -----
    MissingLabelWarning
        Once per quantity (energy, forces, stress) of which some but not all configurations of ``dataset``
        have a label, naming the dataset, the count and the first configurations without it: its errors
        are then over the labelled ones only (a ``.cfg`` configuration without an ``Energy`` block, say).

    Notes
    -----
    MLIP-2 reduces per-atom vector-norm force errors by the number of components 3N, not the
    number of atoms N; the conventions above reproduce its report exactly (checked on its
    training log in ``reference/mlip2``).
    """
    groups = {"all": list(range(len(dataset)))}
    for k, config in enumerate(dataset):
        if config.group is not None:
            groups.setdefault(config.group, []).append(k)
    _warn_missing(dataset, "energy", [k for k, c in enumerate(dataset) if c.energy is None])
    _warn_missing(dataset, "forces", [k for k, c in enumerate(dataset) if not c.labelled_forces.any()])
    _warn_missing(dataset, "stress", [k for k, c in enumerate(dataset) if c.plus_stress is None])
    result = {}
    for name, members in groups.items():
        epa, dforce, dstress, dsigma = [], [], [], []
        force_configurations = 0
        for k in members:
            c = dataset[k]
            if c.energy is not None:
                epa.append((predictions.energies[k] - c.energy) / c.n_atoms)
            mask = c.labelled_forces
            if mask.any():
                force_configurations += 1
                dforce.append((predictions.forces_of(k) - c.forces)[mask])
            if c.plus_stress is not None:
                diff = predictions.stresses[k] - c.plus_stress
                dstress.append(np.linalg.norm(diff))
                if c.volume:
                    dsigma.append(np.linalg.norm(diff) / c.volume * EV_PER_A3_TO_GPA)
        dforce = np.concatenate(dforce) if dforce else np.zeros((0, 3))
        counts = {"n_configurations": len(members), "n_atoms": sum(dataset[k].n_atoms for k in members),
                  "n_energies": len(epa), "n_force_configurations": force_configurations,
                  "n_forces": len(dforce), "n_stresses": len(dstress)}
        result[name] = _summary(np.array(epa), dforce, np.array(dstress), np.array(dsigma), counts)
    return result


# The table's columns: quantity, header, unit, width, metric, factor to the unit shown, format.
_COLUMNS = (
    ("energy", "EPA RMSE", "meV/atom", 11, "epa_rmse", 1e3, ".3f"),
    ("energy", "EPA MAE", "meV/atom", 10, "epa_mae", 1e3, ".3f"),
    ("forces", "F RMSE", "comp.", 9, "force_rmse", 1.0, ".4f"),
    ("forces", "F RMSE", "vector", 9, "force_rmse_vector", 1.0, ".4f"),
    ("forces", "F MAE", "vector", 9, "force_mae_vector", 1.0, ".4f"),
    ("stress", "S RMSE", "GPa", 9, "stress_rmse_gpa", 1.0, ".3f"),
)
# Per quantity: the count of configurations labelled with it, and how a note names those.
_COUNTED = {"energy": ("n_energies", "EPA", "with an energy"),
            "forces": ("n_force_configurations", "forces", "with forces"),
            "stress": ("n_stresses", "stress", "with a stress")}


def format_errors(errors: dict[str, dict], title: str = "") -> str:
    """A plain-text table of :func:`error_metrics` output (EPA in meV/atom, forces in eV/Å, stress in GPa).

    A quantity no set has labels of is left out with a note ("No stress labels", as for molecules); a set
    without it where other sets have it shows "—". A set where only some configurations carry a label gets a
    note counting them: "all: EPA over the 95 of 100 configurations with an energy".
    """
    present = {q for q, (key, *_) in _COUNTED.items() if any(m[key] for m in errors.values())}
    columns = [c for c in _COLUMNS if c[0] in present]
    lines = [title] if title else []
    lines.append(f"{'group':<24}{'cfgs':>6}" + "".join(f"{header:>{width}}" for _, header, _, width, *_ in columns))
    lines.append(f"{'':<24}{'':>6}" + "".join(f"{unit:>{width}}" for _, _, unit, width, *_ in columns))
    notes = []
    for name, m in errors.items():
        cells = []
        for _, _, _, width, key, factor, fmt in columns:
            value = m[key]
            cells.append(f"{'—':>{width}}" if value is None else f"{factor * value:>{width}{fmt}}")
        lines.append(f"{name[:23]:<24}{m['n_configurations']:>6}" + "".join(cells))
        partial = [f"{what} over the {m[key]} of {m['n_configurations']} configurations {whose}"
                   for q, (key, what, whose) in _COUNTED.items() if q in present and 0 < m[key] < m["n_configurations"]]
        if partial:
            notes.append(f"{name}: " + "; ".join(partial))
    if "forces" in present:
        lines.append("Forces in eV/Å. 'comp.' = sqrt(sum |dF_i|^2 / 3N), what MLIP-2 prints as RMS; "
                     "'vector' = per atom on |dF_i|.")
    if "stress" in present:
        lines.append("Stress RMSE per component.")
    absent = [_WORDS[q][1] for q in _COUNTED if q not in present]
    if absent:
        lines.append(f"No {' or '.join(absent)} labels: {'that column is' if len(absent) == 1 else 'those columns are'}"
                     " left out.")
    return "\n".join(lines + notes)


def shown(value: float | None, fmt: str, unit: str = "", factor: float = 1.0) -> str:
    """``factor * value`` formatted as ``fmt`` with its unit, or "—" for an error :func:`error_metrics` has no
    labels for (``None``); for progress lines and tables."""
    return "—" if value is None else f"{factor * value:{fmt}}" + (f" {unit}" if unit else "")

