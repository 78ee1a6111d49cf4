"""Loss-landscape studies behind ``mtpfit analyse``: train, then tabulate and plot the Fisher information across
levels, or the Hessian spectra seen through each optimizer's preconditioner."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset
from ..metrics import error_metrics, shown
from ..objective import Loss, Objective
from ..optim import make_optimizer
from ..potential.mtp import MTP
from ..tables import pyplot, write_table
from ..train.full_batch import FULL_BATCH_METHODS, train_full_batch
from ..train.checkpoint import cached_results
from ..train.initial import fit_species_energies
from ..train.minibatch import train_minibatch
from .fisher import analyse_fisher
from .hessian import HessianSpectrum, adam_preconditioner, dense_preconditioner, hessian_spectrum, soap_preconditioner

__all__ = ["fisher_study", "hessian_study"]


def _train(objective: Objective, x0, optimizer: str, max_iter: int, epochs: int, batch_size: int, seed: int,
           clip: float | None = None, sketch: int = 0):
    """θ after training, and what the optimizer left behind (its state or scipy's result)."""
    if optimizer in FULL_BATCH_METHODS:
        options = {"sketch": sketch} if optimizer == "LM" and sketch else {}
        run = train_full_batch(objective, x0, optimizer, max_iter=max_iter, log_every=0, progress=None, **options)
        return run.result.x, run.result
    hyper = {} if clip is None else {"clip": clip}
    result = train_minibatch(objective, make_optimizer(optimizer, **hyper), x0, epochs=epochs, batch_size=batch_size,
                             seed=seed, progress=None)
    return result.x, result


def _errors(objective: Objective, validation: Dataset, x) -> dict:
    """Validation EPA RMSE (meV/atom) and force RMSE (eV/Å) at θ = ``x``; None for a quantity ``validation`` has
    no labels of."""
    v = error_metrics(validation, Objective(objective.mtp, validation, objective.loss,
                                            objective.n_threads).predict(x))["all"]
    return {"val_epa_rmse_meV": None if v["epa_rmse"] is None else 1e3 * v["epa_rmse"],
            "val_force_rmse": v["force_rmse"]}



def _setup(out, progress, loss):
    """The output folder (created), the progress printer and the loss (MLIP-2's by default)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out, progress or (lambda line: None), loss or Loss()


def _settings(train: Dataset, validation: Dataset, loss: Loss, **arguments) -> dict:
    """What a study's per-level result depends on: the data, the loss and the study's own arguments."""
    return {"data": [train.fingerprint(), validation.fingerprint()], "loss": dataclasses.asdict(loss), **arguments}


def _each_level(out: Path, study: str, levels, settings: dict, compute, say) -> dict:
    """``compute(level)`` for each level, checkpointed in ``out/checkpoints/{study}_level_NN.json``
    (:func:`~mtpfit.train.checkpoint.cached_results`)."""
    names = {f"{study}_level_{level:02d}": level for level in levels}
    found = cached_results(out / "checkpoints", names, settings, lambda name: compute(names[name]), say)
    return {names[name]: result for name, result in found.items()}


def fisher_study(train: Dataset, validation: Dataset, levels, species, out: str | Path, min_dist: float = 2.0,
                 max_dist: float = 5.0, loss: Loss | None = None, optimizer: str = "LM", max_iter: int = 50,
                 init_interval: float = 0.1, seed: int = 0, n_threads: int = 0, sketch: int = 0,
                 progress=print) -> list[dict]:
    """Train one MTP per level (with LM, ``sketch`` rows per configuration of a sketched JᵀWJ; 0: exact), then
    analyse the Fisher information F = 2JᵀWJ of the training loss at its θ.

    Writes into ``out``: ``fisher.csv`` and ``fisher.md`` (one row per level: errors, parameter count,
    eigenvalue range, decades, stiff directions, effective number of parameters, trace and stiff-direction
    shares of the radial, species and moment blocks), ``fisher_eigenvalues.json``, and the plots
    ``fisher_spectra.png`` (eigenvalues per level), ``fisher_blocks.png`` (block shares) and
    ``fisher_basis_functions.png`` (log-sensitivity θ_α²F_αα of each moment coefficient against its level).
    Each level is checkpointed in ``out/checkpoints``; a rerun with the same settings and data reuses the
    finished levels.

    Returns
    -------
    list of dict
        The table rows.
    """
    out, say, loss = _setup(out, progress, loss)
    settings = _settings(train, validation, loss, min_dist=min_dist, max_dist=max_dist, optimizer=optimizer,
                         max_iter=max_iter, init_interval=init_interval, seed=seed, sketch=sketch)

    def level_result(level):
        mtp = MTP.from_level(level, species=species, min_dist=min_dist, max_dist=max_dist)
        objective = Objective(mtp, train, loss, n_threads=n_threads)
        x0 = fit_species_energies(objective, mtp.init_params(init_interval, seed))
        x, _ = _train(objective, x0, optimizer, max_iter, 0, 0, seed, sketch=sketch)
        a = analyse_fisher(objective, x)
        row = {"level": level, **_errors(objective, validation, x), **a.summary()}
        say(f"level {level:2d}: {row['n_params']} parameters, validation EPA RMSE "
            f"{shown(row['val_epa_rmse_meV'], '.3f', 'meV/atom')}, force RMSE "
            f"{shown(row['val_force_rmse'], '.4f', 'eV/Å')}; F spans {row['decades']:.1f} decades, "
            f"{row['stiff_6_decades']} stiff directions, γ = {row['effective_parameters']:.1f}")
        return {"row": row, "eigenvalues": a.eigenvalues.tolist(), "levels": a.levels.tolist(),
                "basis_function_sensitivity": a.basis_function_sensitivity().tolist()}

    results = _each_level(out, "fisher", levels, settings, level_result, say)
    rows = [r["row"] for r in results.values()]
    write_table(rows, out, "fisher")
    (out / "fisher_eigenvalues.json").write_text(json.dumps(
        {str(level): {k: r[k] for k in ("eigenvalues", "levels", "basis_function_sensitivity")}
         for level, r in results.items()}))
    analyses = {level: {k: np.asarray(v) for k, v in r.items() if k != "row"} for level, r in results.items()}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (level, a) in enumerate(analyses.items()):
        lam = a["eigenvalues"][a["eigenvalues"] > 0]
        ax.plot(np.arange(1, len(lam) + 1), lam / lam[0], color=f"C{k % 10}", label=f"level {level}")
    ax.set(yscale="log", xscale="log", xlabel="eigenvalue index", ylabel="λ / λ_max",
           title="Fisher information spectra (sloppiness)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fisher_spectra.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, prefix, title in ((axes[0], "trace_fraction_", "share of tr F"),
                              (axes[1], "stiff_share_", "share of stiff directions")):
        bottom = np.zeros(len(rows))
        for k, block in enumerate(("radial", "species", "moment")):
            values = np.array([r[prefix + block] for r in rows])
            ax.bar([str(r["level"]) for r in rows], values, bottom=bottom, color=f"C{k}", label=block)
            bottom += values
        ax.set(xlabel="level", title=title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fisher_blocks.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (level, a) in enumerate(analyses.items()):
        sens = a["basis_function_sensitivity"]
        jitter = 0.15 * (k - len(analyses) / 2) / max(len(analyses), 1)
        ax.scatter(a["levels"] + jitter, np.maximum(sens, 1e-300), s=10, color=f"C{k % 10}", label=f"MTP level {level}")
    ax.set(yscale="log", xlabel="basis-function level", ylabel="θ_α² F_αα",
           title="log-sensitivity of the moment coefficients")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fisher_basis_functions.png", dpi=110)
    plt.close(fig)
    return rows


def hessian_study(train: Dataset, validation: Dataset, levels, species, out: str | Path,
                  optimizers=("adam", "radam", "soap", "BFGS"), min_dist: float = 2.0, max_dist: float = 5.0,
                  loss: Loss | None = None, epochs: int = 20, batch_size: int = 32, max_iter: int = 200,
                  init_interval: float = 0.1, seed: int = 0, probes: int = 4, steps: int = 40, n_threads: int = 0,
                  clip: float | None = 1.0, progress=print) -> list[dict]:
    """For each level, train with each optimizer from the same θ₀; at each end point, the spectrum of the loss
    Hessian H and of P^{1/2} H P^{1/2} for the preconditioner P the optimizer built (Adam/RAdam/AdamW/LAMB:
    diag(1/(√v̂ + ε)); SOAP: its rotated Adam; BFGS: scipy's inverse-Hessian approximation).

    Mini-batch optimizers clip the gradient norm at ``clip`` (``None``: their defaults): from a random θ₀ the
    first gradients are large enough for the un-normalised early steps of RAdam to diverge.

    Writes ``hessian.csv``/``hessian.md`` (per level, optimizer and preconditioner: errors, extreme eigenvalues,
    condition number, negative-curvature mass) and ``hessian_density.png`` (spectral densities of log10|λ|, one
    row of panels per level). Each level is checkpointed in ``out/checkpoints``; a rerun with the same settings
    and data reuses the finished levels.

    Returns
    -------
    list of dict
        The table rows.
    """
    out, say, loss = _setup(out, progress, loss)
    levels = [levels] if np.isscalar(levels) else list(levels)
    settings = _settings(train, validation, loss, optimizers=list(optimizers), min_dist=min_dist,
                         max_dist=max_dist, epochs=epochs, batch_size=batch_size, max_iter=max_iter,
                         init_interval=init_interval, seed=seed, probes=probes, steps=steps, clip=clip)

    def level_result(level):
        mtp = MTP.from_level(level, species=species, min_dist=min_dist, max_dist=max_dist)
        objective = Objective(mtp, train, loss, n_threads=n_threads)
        x0 = fit_species_energies(objective, mtp.init_params(init_interval, seed))
        found = []
        for index, name in enumerate(optimizers):
            x, left = _train(objective, x0, name, max_iter, epochs, batch_size, seed, clip)
            errors = _errors(objective, validation, x)
            candidates = [("none", None)]
            if "hess_inv" in left and isinstance(left["hess_inv"], np.ndarray):
                candidates.append(("BFGS inverse Hessian", dense_preconditioner(left["hess_inv"])))
            elif "state" in left:
                for label, build in (("SOAP", soap_preconditioner), ("Adam second moment", adam_preconditioner)):
                    try:
                        candidates.append((label, build(left["state"])))
                        break
                    except ValueError:
                        continue
            for label, root in candidates:
                spectrum = hessian_spectrum(objective, x, root, label, probes=probes, steps=steps, seed=seed)
                row = {"level": level, "optimizer": name, **errors, "final_loss": float(objective.fun(x)),
                       **spectrum.summary()}
                found.append({"index": index, "row": row, "spectrum": spectrum.to_dict()})
                say(f"level {level} {name}: P = {label}: λ_max {row['lambda_max']:.3e}, λ_min "
                    f"{row['lambda_min']:.3e}, condition number {row['condition_number']:.3e}")
        return found

    results = _each_level(out, "hessian", levels, settings, level_result, say)
    rows = [item["row"] for found in results.values() for item in found]
    spectra = [(level, item["index"], item["row"]["optimizer"], HessianSpectrum.from_dict(item["spectrum"]))
               for level, found in results.items() for item in found]
    write_table(rows, out, "hessian")
    plt = pyplot()
    fig, axes = plt.subplots(len(levels), 2, figsize=(10, 3.6 * len(levels)), sharey="row", squeeze=False)
    grid = np.linspace(-12, 8, 400)
    for level, index, name, spectrum in spectra:
        row_axes = axes[levels.index(level)]
        plain = spectrum.name == "none"
        row_axes[0 if plain else 1].plot(grid, spectrum.density(grid)[0], "-" if plain else "--",
                                         color=f"C{index % 10}", label=f"{name} ({spectrum.name})")
    for level, (left_ax, right_ax) in zip(levels, axes):
        left_ax.set(xlabel="log10 λ (λ > 0)", ylabel="spectral density", title=f"level {level}: H at each end point")
        right_ax.set(xlabel="log10 λ (λ > 0)", title=f"level {level}: P^{{1/2}} H P^{{1/2}}, P the optimizer's")
        left_ax.legend(fontsize=7)
        right_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "hessian_density.png", dpi=110)
    plt.close(fig)
    return rows
