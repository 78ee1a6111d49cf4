"""Full-batch training with scipy.optimize.minimize: progress, history, checkpoints, errors."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.optimize

from ..data.dataset import Dataset
from ..metrics import error_metrics
from ..objective.objective import Objective
from ..potential.mtp import MTP
from .checkpoint import writes_files

__all__ = ["TrainingRun", "train_scipy", "SCIPY_METHODS"]

#: scipy methods this trainer drives; Newton-CG and trust-krylov get Hessian–vector products
#: (:meth:`mtpfit.Objective.hessp`).
SCIPY_METHODS = ("BFGS", "L-BFGS-B", "CG", "Newton-CG", "trust-krylov")
_HESSP_METHODS = ("Newton-CG", "trust-krylov")


@dataclass
class TrainingRun:
    """Outcome of a training run.

    Attributes
    ----------
    mtp : MTP
        The trained potential (θ = ``result.x``).
    result : scipy.optimize.OptimizeResult
        ``x``, ``fun``, ``nit``, ``nfev``, ``success``, ``message`` as scipy reports them;
        ``nfev`` is replaced by the loss+gradient passes actually made (equivalent full passes).
    history : list of dict
        One row per iteration: ``iteration``, ``elapsed_s``, ``loss``, ``passes`` and, every
        ``log_every`` iterations, ``train_epa_rmse`` (eV/atom) and ``train_force_rmse`` (eV/Å).
    wall_time : float
        Seconds spent in the optimizer.
    errors : dict
        ``{"train": …, "validation": …}`` from :func:`mtpfit.metrics.error_metrics`.
    interrupted : bool
        True when stopped by Ctrl-C; θ is then the last completed iterate.
    """

    mtp: MTP
    result: scipy.optimize.OptimizeResult
    history: list[dict] = field(default_factory=list)
    wall_time: float = 0.0
    errors: dict = field(default_factory=dict)
    interrupted: bool = False


def train_scipy(objective: Objective, x0: np.ndarray, method: str = "BFGS", max_iter: int = 1000,
                gtol: float = 1e-8, validation: Dataset | None = None, log_every: int = 10,
                checkpoint: str | Path | None = None, checkpoint_every: int = 50, time_limit: float | None = None,
                progress: Callable[[str], None] | None = print) -> TrainingRun:
    """Minimise the objective with :func:`scipy.optimize.minimize`.

    Parameters
    ----------
    objective : Objective
        Loss over the training set.
    x0 : ndarray, shape (n_params,)
        Starting θ.
    method : {"BFGS", "L-BFGS-B", "CG", "Newton-CG", "trust-krylov"}
    max_iter : int
        Iteration limit (scipy's ``maxiter``).
    gtol : float
        Gradient-norm tolerance (scipy's ``gtol``; ``xtol`` for Newton-CG).
    validation : Dataset, optional
        Evaluated once at the end.
    log_every : int
        Train errors are computed and printed every this many iterations (one extra
        energy+forces pass each time).
    checkpoint : path, optional
        An ``.mtp`` file rewritten atomically every ``checkpoint_every`` iterations with the
        current θ, so an interrupted run loses at most that much work (restart from it with
        ``MTP.read``).
    time_limit : float, optional
        Wall-time budget (s): the run stops after the first iteration that ends past it, with ``success=False``
        and the message "wall-time budget of … s reached".
    progress : callable or None
        Receives one line per iteration; ``None`` is silent.

    Returns
    -------
    TrainingRun

    Raises
    ------
    ValueError
        For an unsupported method.
    FloatingPointError
        When the loss becomes non-finite (naming the iteration).
    """
    if method not in SCIPY_METHODS:
        raise ValueError(f"unknown scipy method {method!r}; choose from {SCIPY_METHODS}")
    say = progress or (lambda line: None)
    history: list[dict] = []
    state = {"x": np.array(x0, dtype=float), "iteration": 0}
    start = time.perf_counter()

    def record(intermediate_result):
        state["iteration"] += 1
        state["x"] = np.array(intermediate_result.x)
        loss = float(intermediate_result.fun)
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at iteration {state['iteration']}")
        row = {"iteration": state["iteration"], "elapsed_s": time.perf_counter() - start, "loss": loss,
               "passes": objective.passes}
        line = f"iter {row['iteration']:5d}  loss {loss:.6e}  passes {row['passes']:7.1f}  {row['elapsed_s']:8.1f} s"
        if log_every and row["iteration"] % log_every == 0:
            m = error_metrics(objective.dataset, objective.predict(state["x"]))["all"]
            row["train_epa_rmse"], row["train_force_rmse"] = m["epa_rmse"], m["force_rmse"]
            line += f"  train EPA RMSE {1e3 * m['epa_rmse']:.3f} meV/atom  force RMSE {m['force_rmse']:.4f} eV/Å"
        history.append(row)
        say(line)
        if checkpoint and row["iteration"] % checkpoint_every == 0:
            write_atomically(objective.mtp.copy(state["x"]), Path(checkpoint))
        if time_limit is not None and row["elapsed_s"] >= time_limit:
            state["budget"] = True
            raise StopIteration

    options = {"maxiter": int(max_iter), "gtol": gtol}
    if method == "Newton-CG":
        options = {"maxiter": int(max_iter), "xtol": gtol}
    hessp = objective.hessp if method in _HESSP_METHODS else None
    passes_before = objective.passes
    interrupted = False
    try:
        result = scipy.optimize.minimize(objective.fun_and_jac, state["x"], jac=True, hessp=hessp, method=method,
                                         options=options, callback=record)
    except KeyboardInterrupt:
        interrupted = True
        result = scipy.optimize.OptimizeResult(
            x=state["x"], fun=objective.fun(state["x"]), nit=state["iteration"], success=False,
            message="interrupted by the user")
    wall = time.perf_counter() - start
    if state.get("budget"):
        # scipy says "`callback` raised `StopIteration`" (and success False): say why
        result.message, result.success = f"wall-time budget of {time_limit:g} s reached", False
    result.nfev = objective.passes - passes_before
    if not np.isfinite(result.fun):
        raise FloatingPointError(f"training ended with a non-finite loss ({result.fun}); θ is not usable")
    return finish_run(objective, result, history, wall, validation, checkpoint, interrupted)


def finish_run(objective: Objective, result, history: list, wall: float, validation: Dataset | None,
               checkpoint: str | Path | None, interrupted: bool = False) -> TrainingRun:
    """The :class:`TrainingRun` of a finished full-batch run: the trained potential, train and validation errors,
    the final checkpoint written."""
    mtp = objective.mtp.copy(result.x)
    errors = {"train": error_metrics(objective.dataset, objective.predict(result.x))}
    if validation is not None:
        errors["validation"] = error_metrics(validation, Objective(mtp, validation, objective.loss,
                                                                   objective.n_threads, objective.comm)
                                             .predict(result.x))
    if checkpoint:
        write_atomically(mtp, Path(checkpoint))
    return TrainingRun(mtp, result, history, wall, errors, interrupted)


def write_atomically(mtp: MTP, path: Path) -> None:
    if not writes_files():
        return
    tmp = path.with_name(path.name + ".tmp")
    mtp.write(tmp)
    tmp.replace(path)
