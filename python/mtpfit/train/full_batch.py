"""One entry point for every full-batch trainer: the native BFGS, scipy's methods and the least-squares ones."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.dataset import Dataset
from ..metrics import error_metrics
from ..objective.objective import Objective
from ..optim.least_squares import LEAST_SQUARES_METHODS
from ..optim.native_bfgs import native_bfgs
from ..optim.varpro import varpro
from .scipy_trainer import SCIPY_METHODS, TrainingRun, finish_run, train_scipy, write_atomically

__all__ = ["FULL_BATCH_METHODS", "train_full_batch"]

#: Names of the full-batch trainers: variable projection ("varpro"), the reference trainer's BFGS, scipy.optimize.minimize's methods,
#: Levenberg–Marquardt ("LM") and Gauss–Newton ("GN").
FULL_BATCH_METHODS = ("varpro", "native-bfgs") + SCIPY_METHODS + tuple(LEAST_SQUARES_METHODS)


def train_full_batch(objective: Objective, x0: np.ndarray, method: str = "BFGS", max_iter: int = 1000,
                     validation: Dataset | None = None, log_every: int = 10, checkpoint: str | Path | None = None,
                     time_limit: float | None = None, progress: Callable[[str], None] | None = print,
                     **options) -> TrainingRun:
    """Train with the full-batch method ``method`` and report errors.

    Parameters
    ----------
    objective : Objective
    x0 : ndarray, shape (n_params,)
    method : str
        One of :data:`FULL_BATCH_METHODS`.
    max_iter : int
        Iterations (for the native BFGS: after its pre-training ones).
    validation : Dataset, optional
        Evaluated once at the end.
    log_every : int
        Train errors are printed every this many iterations (one energy+forces pass each).
    checkpoint : path, optional
        ``.mtp`` file rewritten atomically at every logged iteration and at the end.
    time_limit : float, optional
        Wall-time budget (s).
    progress : callable or None
        Receives one line per iteration.
    **options
        Passed to the method: :func:`~mtpfit.optim.varpro.varpro`, :func:`~mtpfit.optim.native_bfgs.native_bfgs`,
        :func:`~mtpfit.train.train_scipy` (``gtol``),
        :func:`~mtpfit.optim.least_squares.levenberg_marquardt` or
        :func:`~mtpfit.optim.least_squares.gauss_newton`.

    Returns
    -------
    TrainingRun

    Raises
    ------
    ValueError
        For an unknown method.
    FloatingPointError
        When the loss becomes non-finite (the run diverged).
    """
    if method in SCIPY_METHODS:
        return train_scipy(objective, x0, method=method, max_iter=max_iter, validation=validation,
                           log_every=log_every, checkpoint=checkpoint, time_limit=time_limit, progress=progress,
                           **options)
    if method == "native-bfgs":
        trainer = native_bfgs
    elif method == "varpro":
        trainer = varpro
    elif method in LEAST_SQUARES_METHODS:
        trainer = LEAST_SQUARES_METHODS[method]
    else:
        raise ValueError(f"unknown full-batch method {method!r}; choose from {', '.join(FULL_BATCH_METHODS)}")
    say = progress or (lambda line: None)
    start = time.perf_counter()

    def report(r):
        phase = f"{r.phase:<8} " if "phase" in r else ""
        line = f"iter {r.nit:5d}  {phase}loss {r.fun:.6e}  {time.perf_counter() - start:8.1f} s"
        if log_every and r.nit % log_every == 0:
            m = error_metrics(objective.dataset, objective.predict(r.x))["all"]
            line += f"  train EPA RMSE {1e3 * m['epa_rmse']:.3f} meV/atom  force RMSE {m['force_rmse']:.4f} eV/Å"
            if checkpoint:
                write_atomically(objective.mtp.copy(r.x), Path(checkpoint))
        say(line)

    result = trainer(objective, x0, max_iter=max_iter, time_limit=time_limit,
                     callback=report if progress or checkpoint else None, **options)
    return finish_run(objective, result, result.history, result.wall_time, validation, checkpoint)
