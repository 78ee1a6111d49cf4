"""The relaxation fine-tuning study behind ``mtpfit finetune-relax``: DFT minima → displaced starts → fine-tune
for each (k, η) → relaxed-structure and energy/force test errors before and after, tables and plots."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset
from ..metrics import error_metrics, shown
from ..objective import Loss, Objective
from ..potential.mtp import MTP
from ..tables import pyplot, write_table
from ..train.checkpoint import cached_results
from .displacement import displacement_rmsd
from .dynamics import FIRE, GradientDescent
from .finetune import RelaxationObjective, finetune_relax
from .minima import dft_minima, displaced_starts
from .relaxation import relax, unrolled_relaxation

__all__ = ["finetune_relax_study", "PAPER_REDUCTION"]

#: Dramko et al. (arXiv:2512.01067): relaxed-structure error on silicon lowered by about 32 %.
PAPER_REDUCTION = 0.32


def _rule(name: str, eta: float, max_step: float):
    if name == "gd":
        return GradientDescent(eta=eta, max_step=max_step)
    if name == "fire":
        return FIRE(dt=eta, dt_max=max(1.0, eta), max_step=max_step)
    raise ValueError(f"unknown relaxation rule {name!r}; use 'gd' or 'fire'")


def _relaxed_errors(mtp: MTP, theta, pairs, fmax: float, steps: int) -> dict:
    """Mean and per-pair relaxed-structure error (Å) after relaxing every start with FIRE to ``fmax``."""
    errors, unconverged = [], 0
    for pair in pairs:
        run = relax(mtp, pair.start, FIRE(), steps=steps, fmax=fmax, theta=theta)
        unconverged += not run.converged
        errors.append(displacement_rmsd(run.positions, pair.minimum)[0])
    return {"mean": float(np.mean(errors)), "each": [float(e) for e in errors], "unconverged": unconverged}


def _unrolled_error(mtp: MTP, theta, pairs, rule, k: int) -> float:
    return float(np.mean([unrolled_relaxation(mtp, theta, p.start, p.minimum, rule, k, gradient=False)[0]
                          for p in pairs]))


def _fit_errors(objective: Objective, theta) -> dict:
    """EPA RMSE (meV/atom) and force RMSE (eV/Å) on the objective's dataset; None for a quantity it has no labels
    of."""
    e = error_metrics(objective.dataset, objective.predict(theta))["all"]
    return {"epa_rmse_meV": None if e["epa_rmse"] is None else 1e3 * e["epa_rmse"], "force_rmse": e["force_rmse"]}



def finetune_relax_study(mtp: MTP, train: Dataset, test: Dataset, out: str | Path, ks=(5, 10, 20),
                         etas=(0.01, 0.02), rule: str = "gd", max_step: float = 0.2, optimizer: str = "adam",
                         max_iter: int = 30, batch_size: int | None = None, mix: float = 1.0,
                         amplitude: float = 0.05, n_starts: int = 2, n_test_starts: int = 4,
                         fmax_minimum: float = 0.02, fmax_relaxed: float = 1e-3, relax_steps: int = 2000,
                         loss: Loss | None = None, seed: int = 0, n_threads: int = 0,
                         hyperparameters: dict | None = None, progress=print) -> list[dict]:
    """Fine-tune ``mtp`` through unrolled relaxations for every (k, η) and measure what it changes.

    The DFT minima are the configurations of ``train`` (fine-tuning) and ``test`` (testing) whose largest force
    component is below ``fmax_minimum`` (eV/Å); each gets ``n_starts`` (``n_test_starts``) starts displaced by
    Gaussians of ``amplitude`` Å per coordinate (:func:`~mtpfit.relax.minima.displaced_starts`). For each k in
    ``ks`` and η in ``etas`` the potential is fine-tuned from its θ with ``optimizer`` for ``max_iter`` steps on
    the :class:`~mtpfit.relax.finetune.RelaxationObjective` (``rule`` with step η, k steps, energy/force loss of
    ``train`` mixed in with weight ``mix``).

    Measured before and after: the relaxed-structure error on the test starts relaxed to convergence with FIRE
    (``fmax_relaxed`` eV/Å, at most ``relax_steps`` steps) — what a user sees — and after the k unrolled steps
    that were trained on; the energy and force RMSE on all of ``test`` and ``train``.

    Writes into ``out``: ``finetune_relax.csv``/``.md`` (one row per (k, η)), ``finetune_relax.json`` (rows,
    per-start errors, loss histories), ``finetune_relax.png`` (reduction against k per η; loss curves) and the
    fine-tuned potentials ``finetuned_k{k}_eta{η}.mtp``. Each (k, η) is checkpointed in ``out/checkpoints`` and
    reused by a rerun with the same settings and data.

    Returns
    -------
    list of dict
        The table rows.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda line: None)
    loss = loss or Loss()
    hyperparameters = dict(hyperparameters or {})
    train_minima, test_minima = dft_minima(train, fmax_minimum), dft_minima(test, fmax_minimum)
    train_pairs = displaced_starts(train_minima, amplitude, n_starts, seed)
    test_pairs = displaced_starts(test_minima, amplitude, n_test_starts, seed + 1)
    say(f"{len(train_minima)} fine-tuning minima ({len(train_pairs)} starts), {len(test_minima)} test minima "
        f"({len(test_pairs)} starts); displacement σ = {amplitude} Å per coordinate")
    theta0 = mtp.theta.copy()
    settings = {"data": [train.fingerprint(), test.fingerprint()],
                "theta0": hashlib.sha256(theta0.tobytes()).hexdigest(), "species": [str(s) for s in mtp.species],
                "rule": rule, "max_step": max_step, "optimizer": optimizer, "max_iter": max_iter,
                "batch_size": batch_size, "mix": mix, "amplitude": amplitude, "n_starts": n_starts,
                "n_test_starts": n_test_starts, "fmax_minimum": fmax_minimum, "fmax_relaxed": fmax_relaxed,
                "relax_steps": relax_steps, "loss": dataclasses.asdict(loss), "seed": seed, "hyper": hyperparameters}

    # the training set's objective is also the mixed-in energy/force loss
    train_objective, test_objective = Objective(mtp, train, loss, n_threads), Objective(mtp, test, loss, n_threads)

    def baseline(_):
        say("before fine-tuning: relaxing the test starts to convergence")
        return {"test_relaxed": _relaxed_errors(mtp, theta0, test_pairs, fmax_relaxed, relax_steps),
                "test": _fit_errors(test_objective, theta0), "train": _fit_errors(train_objective, theta0)}

    before = cached_results(out / "checkpoints", ["baseline"], settings, baseline, say)["baseline"]
    settings_key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    say(f"before: test relaxed-structure error {before['test_relaxed']['mean']:.4f} Å, test EPA RMSE "
        f"{shown(before['test']['epa_rmse_meV'], '.2f', 'meV/atom')}, force RMSE "
        f"{shown(before['test']['force_rmse'], '.4f', 'eV/Å')}")
    energy_force = train_objective if mix > 0 else None

    def run(name):
        k, eta = grid[name]
        step_rule = _rule(rule, eta, max_step)
        say(f"k = {k}, η = {eta}: fine-tuning with {optimizer}")
        objective = RelaxationObjective(mtp, train_pairs, step_rule, k, energy_force, mix, n_threads)
        # an interrupted fine-tuning resumes from its last checkpoint (zoo optimizers)
        partial = out / "checkpoints" / f"{name}_{settings_key}.npz"
        result = finetune_relax(objective, optimizer, max_iter, batch_size, seed, checkpoint=partial, progress=say,
                                **hyperparameters)
        theta = result.x
        mtp.copy(theta).write(out / f"finetuned_{name}.mtp")
        after = _relaxed_errors(mtp, theta, test_pairs, fmax_relaxed, relax_steps)
        test_after, train_after = _fit_errors(test_objective, theta), _fit_errors(train_objective, theta)
        row = {"k": k, "eta": eta, "rule": rule, "optimizer": optimizer, "steps": result.nit,
               "test_relaxed_before": before["test_relaxed"]["mean"], "test_relaxed_after": after["mean"],
               "reduction_percent": 100 * (1 - after["mean"] / before["test_relaxed"]["mean"]),
               "unconverged_after": after["unconverged"],
               "test_unrolled_before": _unrolled_error(mtp, theta0, test_pairs, step_rule, k),
               "test_unrolled_after": _unrolled_error(mtp, theta, test_pairs, step_rule, k),
               "train_unrolled_before": objective.relaxation_scale,
               "train_unrolled_after": objective.relaxation_error(theta, gradient=False)[0],
               "test_epa_before": before["test"]["epa_rmse_meV"], "test_epa_after": test_after["epa_rmse_meV"],
               "test_force_before": before["test"]["force_rmse"], "test_force_after": test_after["force_rmse"],
               "train_force_before": before["train"]["force_rmse"], "train_force_after": train_after["force_rmse"],
               "wall_s": result.wall_time}
        say(f"k = {k}, η = {eta}: test relaxed-structure error {row['test_relaxed_before']:.4f} → "
            f"{row['test_relaxed_after']:.4f} Å ({row['reduction_percent']:+.1f} % reduction); test force RMSE "
            f"{shown(row['test_force_before'], '.4f', 'eV/Å')} → {shown(row['test_force_after'], '.4f', 'eV/Å')}")
        partial.unlink(missing_ok=True)  # the result below replaces it
        return {"row": row, "each_after": after["each"], "history": result.history}

    grid = {f"k{k:03d}_eta{eta:g}": (k, eta) for k in ks for eta in etas}
    runs = cached_results(out / "checkpoints", grid, settings, run, say)
    rows = [r["row"] for r in runs.values()]
    write_table(rows, out, "finetune_relax")
    (out / "finetune_relax.json").write_text(json.dumps(
        {"settings": settings, "paper_reduction_percent": 100 * PAPER_REDUCTION,
         "test_relaxed_before_each": before["test_relaxed"]["each"],
         "runs": {name: r for name, r in runs.items()}}, indent=1))
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for index, eta in enumerate(etas):
        chosen = [r for r in rows if r["eta"] == eta]
        axes[0].plot([r["k"] for r in chosen], [r["reduction_percent"] for r in chosen], "o-", color=f"C{index}",
                     label=f"η = {eta:g}")
    axes[0].axhline(100 * PAPER_REDUCTION, color="k", ls="--", lw=1, label="Dramko et al. (Si): 32 %")
    axes[0].axhline(0, color="grey", lw=0.5)
    axes[0].set(xlabel="unrolled steps k", ylabel="reduction of the test relaxed-structure error (%)",
                title="converged FIRE relaxations of the test starts")
    axes[0].legend(fontsize=7)
    for index, (name, r) in enumerate(runs.items()):
        axes[1].plot([h["step"] for h in r["history"]], [h["loss"] for h in r["history"]], color=f"C{index % 10}",
                     label=name)
    axes[1].set(xlabel="fine-tuning step", ylabel="loss (1 at the start per term)", title="fine-tuning loss")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "finetune_relax.png", dpi=110)
    plt.close(fig)
    return rows
