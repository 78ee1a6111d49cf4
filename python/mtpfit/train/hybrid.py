"""Hybrids: a first stage, then a full-batch method from where it stopped — the study's Adam → L-BFGS, or a
second-order polish (Adam → LM, BFGS → LM)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..data.dataset import Dataset
from ..objective.objective import Objective
from ..optim.base import Optimizer
from ..optim.result import OptimizationResult
from .checkpoint import writes_files
from .full_batch import run_errors, train_full_batch
from .minibatch import train_minibatch
from .scipy_trainer import TrainingRun

__all__ = ["train_hybrid"]


def train_hybrid(objective: Objective, first: Optimizer | str, method: str, x0: np.ndarray, epochs: int = 10,
                 batch_size: int = 32, seed: int = 0, validation: Dataset | None = None, patience: int | None = None,
                 max_iter: int = 1000, refine_iter: int | None = None, checkpoint_dir: str | Path | None = None,
                 time_limit: float | None = None, refine_time: float | None = None,
                 validate_seconds: float | None = None, first_options: dict | None = None, checkpoint_every: int | None = None,
                 stop: Callable[[], str | None] | None = None, progress: Callable[[str], None] | None = print,
                 **options) -> TrainingRun:
    """``first``, then the full-batch ``method`` for ``refine_iter`` iterations from its θ.

    Parameters
    ----------
    first : Optimizer or str
        A mini-batch optimizer (runs ``epochs`` epochs, or until the validation force RMSE plateaus for
        ``patience`` validations) or a full-batch method of :data:`~mtpfit.train.full_batch.FULL_BATCH_METHODS`
        (runs ``max_iter`` iterations).
    method : str
        The second stage, a full-batch method.
    refine_iter : int, optional
        Iterations of the second stage; default ``max_iter`` (so ``adam+L-BFGS-B`` runs ``epochs`` epochs, then
        ``max_iter`` iterations).
    time_limit : float, optional
        Budget (s) of both stages together: the second gets what the first left.
    refine_time : float, optional
        With ``time_limit``: the part of it kept for the second stage (the first stops at
        ``time_limit − refine_time``).
    validate_seconds : float, optional
        Validation interval in seconds of training, in both stages (see :func:`~mtpfit.train.train_full_batch`);
        a row's ``elapsed_s`` counts from the start of its stage.
    first_options : dict, optional
        Passed to a full-batch first stage (e.g. ``pretrain_iter`` for the native BFGS).
    checkpoint_dir : path, optional
        Each stage checkpoints to ``stage1.npz`` and ``stage2.npz`` there (the potentials next to them); a rerun
        with the same folder resumes: a finished first stage is retraced from its last checkpoint, then the second
        continues from its own.
    checkpoint_every : int, optional
        Steps or iterations between checkpoints (default: each trainer's).
    stop : callable, optional
        Asked after every step of either stage (see :func:`~mtpfit.train.train_full_batch`); a stopped first
        stage ends the run without a second.
    **options
        Passed to the second stage (e.g. ``gtol``, ``geodesic``).

    Returns
    -------
    TrainingRun
        One run: history rows carry ``stage`` (1 or 2); ``result.nit``/``nfev``/``wall_time`` add up both stages,
        ``result.stages`` holds the two stages' results; ``success`` is the second stage's. When the budget runs
        out in the second stage, its message names the whole ``time_limit``.
    """
    say = progress or (lambda line: None)
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    if folder is not None and writes_files():
        folder.mkdir(parents=True, exist_ok=True)
    every = {} if checkpoint_every is None else {"checkpoint_every": checkpoint_every}
    first_limit = time_limit
    if time_limit is not None and refine_time is not None:
        first_limit = max(time_limit - refine_time, 0.0)
    if isinstance(first, str):
        run = train_full_batch(objective, x0, first, max_iter=max_iter, time_limit=first_limit, progress=progress,
                               validation=validation if validate_seconds else None, validate_seconds=validate_seconds,
                               checkpoint=folder / "stage1.npz" if folder else None, stop=stop, **every,
                               **(first_options or {}))
        one, one_history, one_wall, name, stopped = run.result, run.history, run.wall_time, first, run.interrupted
    else:
        one = train_minibatch(objective, first, x0, epochs=epochs, batch_size=batch_size, seed=seed,
                              validation=validation, patience=patience, validate_seconds=validate_seconds,
                              checkpoint=folder / "stage1.npz" if folder else None, time_limit=first_limit,
                              stop=stop, progress=progress, **every)
        one_history, one_wall, name, stopped = one.history, one.wall_time, first.name, one.interrupted
    if stopped:
        one.message = f"{name}: {one.message}; {method}: not started"
        return TrainingRun(objective.mtp.copy(one.x), one, [{"stage": 1, **row} for row in one_history], one_wall,
                           run_errors(objective, validation, one.x), True)
    say(f"{name} stopped ({one.message}); {method} from its θ")
    remaining = None if time_limit is None else max(time_limit - one_wall, 0.0)
    two = train_full_batch(objective, one.x, method, max_iter=max_iter if refine_iter is None else refine_iter,
                           validation=validation, checkpoint=folder / "stage2.npz" if folder else None,
                           time_limit=remaining, validate_seconds=validate_seconds, stop=stop, progress=progress,
                           **every, **options)
    history = [{"stage": 1, **row} for row in one_history] + [{"stage": 2, **row} for row in two.history]
    r = two.result
    message = str(r.message)
    if remaining is not None:
        # the second stage only knows what was left of the budget; name the budget the caller set
        message = message.replace(f"wall-time budget of {remaining:g} s",
                                  f"wall-time budget of {time_limit:g} s (both stages)")
    result = OptimizationResult(x=r.x, fun=r.fun, nit=one.nit + r.nit, nfev=one.nfev + r.nfev, success=r.success,
                                message=f"{name}: {one.message}; {method}: {message}", history=history,
                                wall_time=one_wall + two.wall_time, stages=[one, r])
    return TrainingRun(two.mtp, result, history, result.wall_time, two.errors, two.interrupted)
