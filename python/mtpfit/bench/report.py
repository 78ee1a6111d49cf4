"""REPORT.md from the result files: tables, plots, the best optimizer per dataset and the study's conclusions."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..tables import pyplot
from .aggregate import load_results, markdown_table, summarize
from .campaign import load_campaign

__all__ = ["write_report"]


def _plots(runs, campaign: str, folder: Path) -> list[str]:
    plt = pyplot()
    files = []
    sub, labels = _cells(runs[runs.campaign == campaign])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, cell in enumerate(labels):
        for j, (_, run) in enumerate(sub[sub.cell == cell].iterrows()):
            h = np.asarray(run.history, dtype=float)
            if len(h) == 0:
                continue
            window = max(1, len(h) // 50)
            smooth = np.convolve(h, np.ones(window) / window, mode="valid")
            # a common axis for steps of any batch size, for iterations and for trainers whose work is not loss
            # passes (varpro-LM): the run's training time, spread evenly over its history
            seconds = np.arange(window, len(h) + 1) * float(run.wall_time_s) / len(h)
            ax.plot(seconds, smooth, color=f"C{k % 10}", ls=_line_style(k), alpha=0.7, lw=1,
                    label=cell if j == 0 else None)
    ax.set(yscale="log", xlabel="training wall time (s; each history spread evenly over its run)",
           ylabel="loss (smoothed)", title=f"{campaign}: loss histories")
    ax.legend(fontsize=7)
    files.append(_save(fig, folder / f"{campaign}_loss.png"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, cell in enumerate(labels):
        s = sub[sub.cell == cell]
        ax.scatter(s.wall_time_s, s.val_epa_rmse, color=f"C{k % 10}", label=cell, s=18)
    ax.set(xscale="log", yscale="log", xlabel="wall time (s)", ylabel="validation EPA RMSE (meV/atom)",
           title=f"{campaign}: quality against cost")
    ax.legend(fontsize=7)
    files.append(_save(fig, folder / f"{campaign}_quality_cost.png"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.boxplot([sub[sub.cell == c].val_epa_rmse.dropna().values for c in labels], showfliers=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=7)
    ax.set(yscale="log", ylabel="validation EPA RMSE (meV/atom)", title=f"{campaign}: spread across seeds")
    fig.tight_layout()
    files.append(_save(fig, folder / f"{campaign}_spread.png"))
    return files


def _sweep_plots(runs, campaign: str, folder: Path) -> list[str]:
    """One figure per swept setting of an optimizer (init interval, learning rate, batch size, σ, …): validation
    EPA and force RMSE of every seed against the setting's value, with the median per value."""
    plt = pyplot()
    files = []
    sub = runs[(runs.campaign == campaign) & (runs.swept != "{}")]
    swept = [json.loads(s) for s in sub.swept]
    sub = sub.assign(key=[",".join(sorted(s)) for s in swept], value=[tuple(s.values()) for s in swept])
    for (label, key), group in sub.groupby(["label", "key"], sort=False):
        values = sorted(set(group.value))
        if len(values) < 2:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
        for ax, metric, unit in ((axes[0], "val_epa_rmse", "meV/atom"), (axes[1], "val_force_rmse", "eV/Å")):
            position = {v: i for i, v in enumerate(values)}
            x = np.array([position[v] for v in group.value], dtype=float)
            ax.scatter(x, group[metric], s=16, alpha=0.6, label="one seed")
            medians = [group[group.value == v][metric].median() for v in values]
            ax.plot(range(len(values)), medians, "k-o", ms=4, label="median")
            # categorical axis: swept values are often log-spaced and may include 0
            ax.set_xticks(range(len(values)), [", ".join(f"{u:g}" for u in v) for v in values])
            ax.set(yscale="log", xlabel=key, ylabel=f"validation {metric[4:].replace('_', ' ')} ({unit})")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{campaign}: {label} against {key}")
        files.append(_save(fig, folder / f"{campaign}_{_slug(label)}_{_slug(key)}_sweep.png"))
    return files


def _on_grid(curve: list, grid: np.ndarray, column: int, scale: float) -> np.ndarray:
    """A run's validation error at each time of ``grid``: the last validation at or before it (NaN before the
    first one and after the run ended)."""
    times = np.array([p[0] for p in curve], dtype=float)
    values = np.array([np.nan if p[column] is None else scale * p[column] for p in curve], dtype=float)
    index = np.searchsorted(times, grid, side="right") - 1
    out = np.where(index >= 0, values[np.clip(index, 0, None)], np.nan)
    return np.where(grid <= times[-1], out, np.nan)


def _cells(sub):
    """The runs with their cell names (label, with the swept setting when there is one, and the model when the
    runs have several) in ``cell``, and the names ordered by label, then by swept value, then by model."""
    several = sub.model.nunique() > 1
    sub = sub.assign(cell=[(label if swept == "{}" else f"{label} {swept}") + (f" · {model}" if several else "")
                           for label, swept, model in zip(sub.label, sub.swept, sub.model)])
    keys = {cell: (label, tuple(json.loads(swept).values()), model)
            for cell, label, swept, model in zip(sub.cell, sub.label, sub.swept, sub.model)}
    return sub, sorted(keys, key=keys.get)


def _line_style(k: int) -> str:
    """The k-th cell's line style: the colour cycle has ten colours, so cells 11–20 are dashed, then dotted."""
    return ("-", "--", ":")[k // 10 % 3]


def _curve_plots(runs, campaign: str, folder: Path, references: dict | None = None) -> list[str]:
    """Per dataset: validation EPA RMSE and force RMSE against training wall time for every cell whose runs
    recorded a curve (``validate_seconds``), the median over seeds as a line and their range shaded; the study's
    ``references`` (its [study.references]) as dashed lines."""
    plt = pyplot()
    files = []
    sub = runs[(runs.campaign == campaign) & (runs.curve.map(len) > 0)]
    for dataset, group in sub.groupby("dataset", sort=True):
        group, cells = _cells(group)
        end = max(p[0] for curve in group.curve for p in curve)
        grid = np.linspace(0.0, end, 400)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, column, scale, unit, what in ((axes[0], 1, 1e3, "meV/atom", "EPA RMSE"),
                                              (axes[1], 2, 1.0, "eV/Å", "force RMSE")):
            for k, cell in enumerate(cells):
                table = np.array([_on_grid(c, grid, column, scale) for c in group[group.cell == cell].curve])
                shown = np.isfinite(table).any(axis=0)
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN columns
                    median = np.nanmedian(table, axis=0)
                    low, high = np.nanmin(table, axis=0), np.nanmax(table, axis=0)
                ax.plot(grid[shown], median[shown], color=f"C{k % 10}", ls=_line_style(k), lw=1.4,
                        label=f"{cell} ({len(table)} seeds)")
                # each run's last validation as a dot: a run validated once (one ALS sweep) has no line
                ends = [c[-1] for c in group[group.cell == cell].curve if c[-1][column] is not None]
                ax.scatter([e[0] for e in ends], [scale * e[column] for e in ends], color=f"C{k % 10}", s=8,
                           zorder=3)
                ax.fill_between(grid[shown], low[shown], high[shown], color=f"C{k % 10}", alpha=0.15, lw=0)
            for j, (name, ref) in enumerate((references or {}).items()):
                ax.axhline(ref["epa" if column == 1 else "force"], color="k", ls=("--", ":", "-.")[j % 3], lw=0.9,
                           label=f"study: {name}")
            ax.set(yscale="log", xlabel="training wall time (s, one core)", ylabel=f"validation {what} ({unit})")
        if len(cells) > 10:   # a legend that long would hide the curves: beside the plots
            fig.set_size_inches(15, 4.2)
            axes[1].legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="upper left",
                           bbox_to_anchor=(1.02, 1.0))
        else:
            axes[0].legend(fontsize=7)
        fig.suptitle(f"{campaign}, {dataset}: validation error against time (median over seeds, range shaded)")
        files.append(_save(fig, folder / f"{campaign}_{_slug(dataset)}_time_to_accuracy.png"))
    return files


#: Cells whose median wall times are all within this factor tie by wall time (they ran to a common budget).
_TIE = 1.05

#: What a dataset's best cell is chosen by: its name, summary column and unit, the overview's column and the
#: campaign's [study] key naming the study's best.
_BEST_BY = (("validation EPA RMSE", "val_epa_rmse_median", "", "epa", "best_epa"),
            ("validation force RMSE", "val_force_rmse_median", "", "force", "best_force"),
            ("wall time", "wall_time_s_median", " s", "time", "best_time"))


def _first_at_or_below(curve: list, epa: float | None = None, force: float | None = None) -> float:
    """Seconds of training until a validation has EPA RMSE ≤ epa (eV/atom) and force RMSE ≤ force (eV/Å), a limit
    of None not asked for; inf if none has."""
    for t, e, f in curve:
        if all(limit is None or (value is not None and value <= limit) for value, limit in ((e, epa), (f, force))):
            return float(t)
    return float("inf")


def _reference_lines(runs, campaign: str, dataset: str, references: dict) -> list[str]:
    """The study's figures beside ours: per cell the median final validation errors, their ratios to each
    reference, and the median time at which the runs first reach it (from their curves)."""
    sub, cells = _cells(runs[(runs.campaign == campaign) & (runs.dataset == dataset)])
    lines = []
    for name, ref in references.items():
        rows = []
        for cell in cells:
            group = sub[sub.cell == cell]
            first = [_first_at_or_below(c, ref["epa"] * 1e-3, ref["force"]) for c in group.curve]
            reached, median_first = int(np.isfinite(first).sum()), float(np.median(first))
            if not group.curve.map(len).all():
                when = "no curve recorded"
            elif np.isfinite(median_first):
                when = f"{median_first:.0f} s ({reached}/{len(group)} runs reach it)"
            else:
                when = f"not by half the runs ({reached}/{len(group)} reach it)"
            rows.append({"cell": cell, "n": len(group), "epa": group.val_epa_rmse.median(),
                         "epa_ratio": group.val_epa_rmse.median() / ref["epa"],
                         "force": group.val_force_rmse.median(),
                         "force_ratio": group.val_force_rmse.median() / ref["force"],
                         "time": group.wall_time_s.median(), "first": when})
        seconds = f", {ref['seconds']:g} s" if "seconds" in ref else ""
        lines += [f"Against the study's {name} ({ref['epa']:g} meV/atom, {ref['force']:g} eV/Å{seconds}):", "",
                  markdown_table(pd.DataFrame(rows), {
                      "cell": "optimizer", "n": "runs", "epa": "val EPA median (meV/atom)", "epa_ratio": "÷ study",
                      "force": "val force median (eV/Å)", "force_ratio": "÷ study", "time": "time (s)",
                      "first": f"first at or below the study's {name} (median)"}), ""]
    return lines


# per metric: its runs.csv column, the factor from the curves' units to the column's, its name and unit
_METRICS = {"epa": ("val_epa_rmse", 1e3, "validation EPA RMSE", "meV/atom"),
            "force": ("val_force_rmse", 1.0, "validation force RMSE", "eV/Å")}



def _claim_rows(runs, campaign: str, dataset: str, claims: list) -> list[dict]:
    """Each of the study's claims (its ``[[study.claims]]``) decided on one dataset's runs: the figure and the
    verdict.

    A claim names two cells (``method``, ``than``: cell names as in the tables, the sweep included), optionally a
    ``model`` and a ``dataset``, and a ``metric`` (``epa`` or ``force``). ``kind = "better"``: the median final
    validation error of ``method`` is at most ``within`` (default 1) times that of ``than``. ``kind = "faster"``:
    ``method``'s runs first reach ``than``'s median final error in less time (median over seeds, from the
    validation curves) than ``than``'s own runs do. The claims are checked when the campaign is loaded.
    """
    rows = []
    for claim in claims:
        if claim.get("dataset", dataset) != dataset:
            continue
        pick = runs[(runs.campaign == campaign) & (runs.dataset == dataset)]
        if "model" in claim:
            pick = pick[pick.model == claim["model"]]
        sub, cells = _cells(pick)
        metric = claim.get("metric", "epa")
        column, scale, name, unit = _METRICS[metric]
        row = {"campaign": campaign, "dataset": dataset, "claim": claim["text"]}
        missing = [c for c in (claim["method"], claim["than"]) if c not in cells]
        if missing:
            rows.append({**row, "figure": f"no runs of {', '.join(missing)}", "verdict": "not decided"})
            continue
        mine, theirs = (sub[sub.cell == c] for c in (claim["method"], claim["than"]))
        a, b = mine[column].median(), theirs[column].median()
        if claim["kind"] == "better":
            within = float(claim.get("within", 1.0))
            holds = a <= within * b
            figure = (f"median {name} {a:.4g} ({claim['method']}) against {b:.4g} {unit} ({claim['than']}), "
                      f"ratio {a / b:.3g}" + (f" (claim: ≤ {within:g})" if within != 1.0 else ""))
        elif not (mine.curve.map(len).all() and theirs.curve.map(len).all()):
            rows.append({**row, "figure": "no validation curve recorded", "verdict": "not decided"})
            continue
        else:
            limit = {metric: b / scale}
            t_a, t_b = (float(np.median([_first_at_or_below(c, **limit) for c in g.curve])) for g in (mine, theirs))
            holds = t_a < t_b
            speedup = "" if not (np.isfinite(t_a) and t_a > 0) else f", {t_b / t_a:.2g}× sooner"
            figure = (f"{claim['method']} first reaches {claim['than']}'s median final {name} ({b:.4g} {unit}) at "
                      f"a median {t_a:.0f} s, {claim['than']} at {t_b:.0f} s{speedup}")
        rows.append({**row, "figure": figure, "verdict": "agrees" if holds else "differs"})
    return rows


def _published_lines(runs, meta: dict) -> list[str]:
    """One table over the campaigns whose [study] names a published test EPA MAE: ours beside it."""
    rows = []
    for name, (campaign, _) in sorted(meta.items(), key=lambda item: _file_order(item[1][1].name)):
        published = (campaign.study or {}).get("published")
        sub, cells = _cells(runs[runs.campaign == name])
        for cell in cells if published else []:
            group = sub[sub.cell == cell]
            rows.append({"dataset": group.dataset.iloc[0], "model": group.model.iloc[0], "cell": cell,
                         "n": len(group), "mae": group.val_epa_mae.median(), "published": published["epa_mae"],
                         "ratio": group.val_epa_mae.median() / published["epa_mae"],
                         "rmse": group.val_epa_rmse.median(), "force": group.val_force_rmse.median(),
                         "time": group.wall_time_s.median()})
    if not rows:
        return []
    return ["## Against the published potentials", "",
            "Test EPA MAE of our runs (median over seeds) beside the published MTP's (Zuo et al., J. Phys. Chem. A "
            "124, 731 (2020)), at the published level and cutoffs.", "",
            markdown_table(pd.DataFrame(rows), {"dataset": "dataset", "model": "model", "cell": "optimizer",
                                                "n": "runs", "mae": "test EPA MAE (meV/atom)",
                                                "published": "published", "ratio": "÷ published",
                                                "rmse": "test EPA RMSE", "force": "test force RMSE (eV/Å)",
                                                "time": "time (s)"}), ""]


def _file_order(name: str) -> list:
    """Campaign files in their numbered order (2 before 10), the digits compared as numbers."""
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", name)]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def write_report(results: str | Path, campaigns: str | Path | None = None, out: str | Path | None = None) -> Path:
    """Write ``REPORT.md`` (and ``summary.csv``, PNG plots) into ``results`` from its result files.

    Parameters
    ----------
    results : path
        Folder with one subfolder of result files per campaign.
    campaigns : path, optional
        Folder of the campaign files, for their descriptions and the study's expectations.
    out : path, optional
        Report file; default ``results/REPORT.md``.

    Damaged result files are left out, each named by a :class:`~mtpfit.bench.results.DamagedResultWarning` and
    listed at the top of the report.

    Raises
    ------
    ValueError
        If there are no valid result files.
    """
    results = Path(results)
    runs = load_results(results)
    damaged = runs.attrs["damaged"]
    if runs.empty:
        raise ValueError(f"{results}: no valid result files" + (f" ({len(damaged)} damaged)" if damaged else ""))
    cells = summarize(runs)
    cells.to_csv(results / "summary.csv", index=False)
    runs.drop(columns=["history", "curve"]).to_csv(results / "runs.csv", index=False)
    meta = {}
    for path in sorted(Path(campaigns).glob("*.toml")) if campaigns else []:
        c = load_campaign(path)
        meta[c.name] = (c, path)
    lines = ["# Optimizer study: report", "",
             f"Generated by `mtpfit report {results}` from {len(runs)} result files ({len(cells)} cells). Every "
             "number below is in `summary.csv` (per cell) and `runs.csv` (per run, with the result file it came "
             "from). EPA RMSE in meV/atom; force RMSE in eV/Å per component (MLIP-2's convention); times are wall "
             "seconds on this machine; passes are loss+gradient passes over the training set (— for varpro-LM, "
             "whose passes are JᵀWJ builds and linear solves: `passes_summary` in `runs.csv`).", ""]
    if damaged:
        lines += [f"{len(damaged)} damaged result file(s) are left out (`mtpfit bench` runs them again): "
                  + "; ".join(f"`{Path(path).relative_to(results)}` ({why})" for path, why in damaged.items()) + ".",
                  ""]
    table_columns = {"dataset": "dataset", "model": "model", "label": "optimizer", "swept": "sweep", "n": "runs",
                     "val_epa_rmse_median": "val EPA median", "val_epa_rmse_min": "min", "val_epa_rmse_max": "max",
                     "val_epa_mae_median": "val EPA MAE",
                     "val_force_rmse_median": "val force median", "val_stress_rmse_median": "val stress (GPa)",
                     "wall_time_s_median": "time (s)",
                     "passes_median": "passes", "outliers": "outliers", "diverged": "diverged"}
    lines += ["## Cost", "", "Σ of the runs' training wall times per campaign (each run on one core unless its "
              "campaign says otherwise); on 2 cores a campaign takes about half of it.", ""]
    cost = [{"campaign": c, "runs": len(g), "minutes": g.wall_time_s.sum() / 60.0}
            for c, g in runs.groupby("campaign", sort=False)]
    cost.append({"campaign": "all", "runs": len(runs), "minutes": runs.wall_time_s.sum() / 60.0})
    lines += [markdown_table(pd.DataFrame(cost), {"campaign": "campaign", "runs": "runs",
                                                  "minutes": "Σ wall time (min)"}), ""]
    overview_at = len(lines)
    overview, claims = [], []
    # in the order of their campaign files (numbered), then the others by name
    order = sorted(dict.fromkeys(runs.campaign), key=lambda c: _file_order(meta[c][1].name if c in meta else "~" + c))
    for campaign in order:
        c_meta = meta.get(campaign)
        lines += [f"## {campaign}", ""]
        if c_meta:
            lines += [c_meta[0].description.strip(), "", f"Campaign file: `{c_meta[1].name}`.", ""]
        sub = cells[cells.campaign == campaign]
        order = sorted(range(len(sub)), key=lambda i: (sub.dataset.iloc[i], sub.label.iloc[i],
                                                       tuple(json.loads(sub.swept.iloc[i]).values())))
        sub = sub.iloc[order]
        lines += [markdown_table(sub, table_columns), ""]
        references = ((c_meta[0].study or {}) if c_meta else {}).get("references", {})
        for name in (_plots(runs, campaign, results) + _sweep_plots(runs, campaign, results)
                     + _curve_plots(runs, campaign, results, references)):
            lines.append(f"![{name}]({name})")
        lines.append("")
        for dataset in sorted(set(sub.dataset)) if references else []:
            lines += _reference_lines(runs, campaign, dataset, references)
        for dataset, group in sub.groupby("dataset"):
            best = {what: group.loc[group[col].idxmin()] for what, col, *_ in _BEST_BY
                    if group[col].notna().any()}   # all NaN: no run of the dataset finished
            several = group.model.nunique() > 1
            name = {what: f"{row.label}{'' if row.swept == '{}' else ' ' + row.swept}"
                          f"{f' · {row.model}' if several else ''}" for what, row in best.items()}
            shown_as = {what: f"{name[what]} ({best[what][col]:.4g}{unit})" for what, col, unit, *_ in _BEST_BY
                        if what in best}
            times = group.wall_time_s_median.dropna()
            if len(times) > 1 and times.max() <= _TIE * times.min():
                # every cell ran to the common wall-time budget: the fastest by a second is no finding
                del best["wall time"]
                name["wall time"] = f"a tie (every cell ran {times.min():.4g}–{times.max():.4g} s)"
                shown_as["wall time"] = f"tie ({times.min():.4g}–{times.max():.4g} s)"
            lines.append(f"Best on {dataset}: " + ("; ".join(f"by {what}, {name[what]}" for what in name)
                                                   if best else "none, every run diverged") + ".")
            overview.append({"campaign": campaign, "dataset": dataset,
                             **{column: shown_as.get(what, "—") for what, _, _, column, _ in _BEST_BY}})
            study = (c_meta[0].study or {}) if c_meta else {}
            for what, _, _, _, key in _BEST_BY:
                if key in study and what in best:
                    verdict = "agrees" if best[what].label == study[key] else "differs"
                    lines.append(f"- The study found {study[key]} best by {what}: this {verdict}.")
                    claims.append({"campaign": campaign, "dataset": dataset,
                                   "claim": f"{study[key]} is best by {what}.",
                                   "figure": f"best here: {name[what]}", "verdict": verdict})
            if study.get("conclusion"):
                lines.append(f"- The study's conclusion: {study['conclusion']}")
            for row in _claim_rows(runs, campaign, dataset, study.get("claims", [])):
                claims.append(row)
                verdict = row["verdict"] if row["verdict"] == "not decided" else f"this {row['verdict']}"
                lines.append(f"- The study: {row['claim']} Here: {row['figure']}; {verdict}.")
            lines.append("")
    verdicts = [] if not claims else [
        "## The study's conclusions, one by one", "",
        "Each claim of the study (a campaign's `[[study.claims]]`) decided on our runs at the campaign's common "
        "wall-time budget; the campaign's section repeats it.", "",
        markdown_table(pd.DataFrame(claims), {"campaign": "campaign", "dataset": "dataset", "claim": "the study",
                                              "figure": "here", "verdict": "verdict"}), ""]
    lines[overview_at:overview_at] = _published_lines(runs, meta) + verdicts + [
        "## Best per campaign and dataset", "",
        "Medians over seeds; each campaign's section sets them next to the study's conclusions.", "",
        markdown_table(pd.DataFrame(overview), {"campaign": "campaign", "dataset": "dataset",
                                                "epa": "best by val EPA RMSE (meV/atom)",
                                                "force": "best by val force RMSE (eV/Å)",
                                                "time": "fastest"}), ""]
    path = Path(out) if out else results / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path
