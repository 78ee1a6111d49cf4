"""Fisher-guided model design after Wang, Transtrum et al. (arXiv:2504.19372): grow the MTP level by level and,
at each level, prune the basis functions the data determine least, retraining after every cut; report the
front of validation error against parameter count."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.dataset import Dataset
from ..metrics import shown
from ..objective import Loss, Objective
from ..potential.mtp import MTP
from ..train.initial import fit_species_energies
from .fisher import analyse_fisher
from ..tables import pyplot, write_table
from .landscape import _each_level, _errors, _settings, _setup, _train

__all__ = ["prune_basis_functions", "fisher_design", "pareto_front"]


def prune_basis_functions(mtp: MTP, theta: np.ndarray, drop: np.ndarray) -> tuple[MTP, np.ndarray]:
    """The MTP without the scalar basis functions B_α at the positions ``drop`` of its moment block, and θ
    without their coefficients (the other coefficients unchanged).

    Parameters
    ----------
    mtp : MTP
    theta : ndarray, shape (n_params,)
    drop : array of int
        Indices into the moment coefficients (0 … M−1).

    Returns
    -------
    MTP, ndarray
        The smaller potential (its θ set) and its θ.

    Raises
    ------
    ValueError
        If every basis function would be dropped or an index is out of range.
    """
    basis = mtp.basis
    M = len(basis.alpha_moment_mapping)
    drop = np.unique(np.asarray(drop, dtype=int))
    if len(drop) and (drop.min() < 0 or drop.max() >= M):
        raise ValueError(f"basis-function indices must lie in 0 … {M - 1}")
    keep = np.setdiff1d(np.arange(M), drop)
    if len(keep) == 0:
        raise ValueError("cannot drop every basis function")
    moment = mtp.blocks["moment"]
    new_basis = basis.with_changes(alpha_moment_mapping=basis.alpha_moment_mapping[keep])
    new_theta = np.concatenate([theta[:moment.start], theta[moment][keep]])
    return MTP(new_basis, new_theta, species=mtp.species), new_theta


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, error) that no other point beats in both (ties kept), by increasing cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], np.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def fisher_design(train: Dataset, validation: Dataset, levels, species, out: str | Path, min_dist: float = 2.0,
                  max_dist: float = 5.0, loss: Loss | None = None, optimizer: str = "L-BFGS-B", max_iter: int = 200,
                  refit_iter: int = 100, prune_fraction: float = 0.25, max_prunes: int = 3,
                  tolerance: float = 0.1, init_interval: float = 0.1, seed: int = 0, n_threads: int = 0,
                  progress=print) -> list[dict]:
    """Grow and prune: at each level, train; then, up to ``max_prunes`` times, drop the ``prune_fraction`` of
    moment coefficients with the smallest log-sensitivity θ_α²F_αα (:class:`~mtpfit.analysis.fisher.FisherAnalysis`)
    and retrain warm for ``refit_iter`` iterations, stopping when the validation force RMSE exceeds the level's
    unpruned value by more than ``tolerance`` (relative).

    A pruned model has had ``refit_iter`` more iterations than the model it came from; with short training
    budgets part of its gain is that, so train each level close to convergence (``max_iter``) before reading
    the front.

    Writes ``design.csv``/``design.md`` (every model: level, parameters, basis functions, validation errors,
    Fisher decades and effective parameters, on the front or not) and ``design_front.png``. Each level is
    checkpointed in ``out/checkpoints``; a rerun with the same settings and data reuses the finished levels.

    Returns
    -------
    list of dict
        One row per model.
    """
    out, say, loss = _setup(out, progress, loss)
    settings = _settings(train, validation, loss, min_dist=min_dist, max_dist=max_dist, optimizer=optimizer,
                         max_iter=max_iter, refit_iter=refit_iter, prune_fraction=prune_fraction,
                         max_prunes=max_prunes, tolerance=tolerance, init_interval=init_interval, seed=seed)

    def record(level, step, mtp, x, rows):
        objective = Objective(mtp, train, loss, n_threads=n_threads)
        fisher = analyse_fisher(objective, x)
        row = {"level": level, "prune_step": step, "n_params": mtp.n_params,
               "basis_functions": len(mtp.basis.alpha_moment_mapping), **_errors(objective, validation, x),
               "decades": fisher.decades(), "effective_parameters": fisher.effective_parameters()}
        rows.append(row)
        say(f"level {level:2d} prune {step}: {row['n_params']} parameters ({row['basis_functions']} basis "
            f"functions), validation EPA RMSE {shown(row['val_epa_rmse_meV'], '.3f', 'meV/atom')}, force RMSE "
            f"{shown(row['val_force_rmse'], '.4f', 'eV/Å')}")
        if row["val_force_rmse"] is None:
            raise ValueError(f"{validation.name}: no validation configuration has force labels; the design study "
                             "prunes by the validation force RMSE")
        return fisher, row

    def level_rows(level):
        rows = []
        mtp = MTP.from_level(level, species=species, min_dist=min_dist, max_dist=max_dist)
        objective = Objective(mtp, train, loss, n_threads=n_threads)
        x, _ = _train(objective, fit_species_energies(objective, mtp.init_params(init_interval, seed)), optimizer,
                      max_iter, 0, 0, seed)
        fisher, row = record(level, 0, mtp, x, rows)
        reference = row["val_force_rmse"]
        for step in range(1, max_prunes + 1):
            M = len(mtp.basis.alpha_moment_mapping)
            n_drop = int(np.floor(prune_fraction * M))
            if n_drop == 0 or M - n_drop < 1:
                break
            drop = np.argsort(fisher.basis_function_sensitivity(), kind="stable")[:n_drop]
            mtp, x = prune_basis_functions(mtp, x, drop)
            x, _ = _train(Objective(mtp, train, loss, n_threads=n_threads), x, optimizer, refit_iter, 0, 0, seed)
            mtp = mtp.copy(x)
            fisher, row = record(level, step, mtp, x, rows)
            if row["val_force_rmse"] > (1 + tolerance) * reference:
                break
        return rows

    rows = [row for found in _each_level(out, "design", levels, settings, level_rows, say).values()
            for row in found]
    front = set(pareto_front([(r["n_params"], r["val_force_rmse"]) for r in rows]))
    for i, r in enumerate(rows):
        r["on_front"] = i in front
    write_table(rows, out, "design")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((axes[0], "val_force_rmse", "validation force RMSE (eV/Å)"),
                              (axes[1], "val_epa_rmse_meV", "validation EPA RMSE (meV/atom)")):
        for k, level in enumerate(dict.fromkeys(r["level"] for r in rows)):
            pts = [r for r in rows if r["level"] == level]
            ax.plot([r["n_params"] for r in pts], [r[metric] for r in pts], "o-", color=f"C{k % 10}", ms=4,
                    label=f"level {level} (pruned along the line)")
        on = sorted((r for r in rows if r["on_front"]), key=lambda r: r["n_params"])
        ax.plot([r["n_params"] for r in on], [r[metric] for r in on], "k--", lw=1, label="front (force RMSE)")
        ax.set(xscale="log", yscale="log", xlabel="parameters", ylabel=label)
    axes[0].legend(fontsize=7)
    fig.suptitle("Fisher-guided growth and pruning")
    fig.tight_layout()
    fig.savefig(out / "design_front.png", dpi=110)
    plt.close(fig)
    return rows
