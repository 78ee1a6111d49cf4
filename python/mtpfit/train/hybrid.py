"""Hybrids: a mini-batch optimizer, then a full-batch scipy method from where it stopped (the study's
Adam → L-BFGS)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..data.dataset import Dataset
from ..objective.objective import Objective
from ..optim.base import Optimizer
from ..optim.result import OptimizationResult
from .minibatch import train_minibatch
from .scipy_trainer import TrainingRun, train_scipy

__all__ = ["train_hybrid"]


def train_hybrid(objective: Objective, first: Optimizer, method: str, x0: np.ndarray, epochs: int = 10,
                 batch_size: int = 32, seed: int = 0, validation: Dataset | None = None, patience: int | None = None,
                 max_iter: int = 1000, gtol: float = 1e-8, checkpoint_dir: str | Path | None = None,
                 time_limit: float | None = None, progress: Callable[[str], None] | None = print) -> TrainingRun:
    """``first`` for ``epochs`` epochs (or until the validation force RMSE plateaus for ``patience``
    validations), then ``scipy.optimize.minimize(method=…)`` for ``max_iter`` iterations from its θ.

    ``time_limit`` (s), if given, is the budget of both phases together: the second gets what the first left.

    Returns
    -------
    TrainingRun
        One run: history rows carry ``phase`` (1 or 2); ``result.nit``/``nfev``/``wall_time`` add up both phases.
    """
    checkpoint = Path(checkpoint_dir) / "checkpoint.npz" if checkpoint_dir else None
    one = train_minibatch(objective, first, x0, epochs=epochs, batch_size=batch_size, seed=seed,
                          validation=validation, patience=patience, checkpoint=checkpoint, time_limit=time_limit,
                          progress=progress)
    say = progress or (lambda line: None)
    say(f"{first.name} stopped ({one.message}); {method} from its θ")
    two = train_scipy(objective, one.x, method=method, max_iter=max_iter, gtol=gtol, validation=validation,
                      checkpoint=Path(checkpoint_dir) / "checkpoint.mtp" if checkpoint_dir else None,
                      time_limit=None if time_limit is None else max(time_limit - one.wall_time, 0.0),
                      progress=progress)
    history = [{"phase": 1, **row} for row in one.history] + [{"phase": 2, **row} for row in two.history]
    r = two.result
    result = OptimizationResult(x=r.x, fun=r.fun, nit=one.nit + r.nit, nfev=one.nfev + r.nfev, success=r.success,
                                message=f"{first.name}: {one.message}; {method}: {r.message}", history=history,
                                wall_time=one.wall_time + two.wall_time)
    return TrainingRun(two.mtp, result, history, result.wall_time, two.errors, two.interrupted)
