"""The mini-batch training loop (the optimizer study's LossBatcher + trainer), with validation, early stopping,
checkpoints and exact resume."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.dataset import Dataset
from ..metrics import error_metrics, shown
from ..objective.objective import Objective
from ..optim.base import Optimizer
from ..optim.blocks import ParameterBlocks
from ..optim.result import OptimizationResult
from .checkpoint import (CheckpointError, check_position, load_checkpoint, save_checkpoint, write_atomically,
                         writes_files)

__all__ = ["train_minibatch", "DIVERGENCE_FACTOR"]

#: A batch loss this many times the run's first one counts as divergence: far beyond the spread of batch losses
#: (a few times) and of any recovery seen in the zoo's runs.
DIVERGENCE_FACTOR = 1e8

# Each error of mtpfit.metrics.error_metrics that early stopping can monitor → what at least one validation
# configuration must have for it to be a number, not None: the label (for the message) and the test.
_ENERGY = ("an energy", lambda c: c.energy is not None)
_FORCES = ("force labels", lambda c: bool(c.labelled_forces.any()))
_STRESS = ("a stress", lambda c: c.plus_stress is not None)
_MONITORS = {"epa_rmse": _ENERGY, "epa_mae": _ENERGY, "force_rmse": _FORCES, "force_rmse_vector": _FORCES,
             "force_mae_vector": _FORCES, "force_mae_component": _FORCES, "force_mae_mlip": _FORCES,
             "stress_rmse": _STRESS, "stress_rmse_component": _STRESS,
             # σ = −S/V needs a volume
             "stress_rmse_gpa": ("a stress and a periodic cell",
                                 lambda c: c.plus_stress is not None and bool(c.volume))}


def train_minibatch(objective: Objective, optimizer: Optimizer, x0: np.ndarray, epochs: int = 10,
                    batch_size: int = 32, seed: int = 0, validation: Dataset | None = None,
                    validate_every: int | None = None, validate_seconds: float | None = None,
                    patience: int | None = None,
                    monitor: str = "force_rmse", checkpoint: str | Path | None = None, checkpoint_every: int = 100,
                    max_steps: int | None = None, time_limit: float | None = None,
                    stop: Callable[[], str | None] | None = None,
                    progress: Callable[[str], None] | None = print) -> OptimizationResult:
    """Train with mini-batches of configurations, shuffled every epoch from ``seed``.

    Parameters
    ----------
    objective : Objective
        Loss over the training set; each step uses ``fun_and_jac(θ, batch)``.
    optimizer : Optimizer
        From :func:`mtpfit.optim.make_optimizer`.
    x0 : ndarray, shape (n_params,)
    epochs, batch_size : int
        The last batch of an epoch may be smaller.
    seed : int
        Seeds the shuffling (numpy ``default_rng``).
    validation : Dataset, optional
        Errors are computed at the optimizer's ``eval_params`` every ``validate_every`` steps (default: at the
        end of every epoch) and recorded in the history.
    validate_seconds : float, optional
        Also validate after the first step and then at the first step ending at least this many seconds after the
        last validation (a time-to-accuracy curve; these validations count for ``patience`` too).
    patience : int, optional
        Early stopping: stop after this many validations without improvement of ``monitor`` (a key of
        :func:`mtpfit.metrics.error_metrics`, e.g. ``force_rmse`` or ``epa_rmse``); the result is then the best θ.
        The validation set must have the labels ``monitor`` is computed from.
    checkpoint : path, optional
        An ``.npz`` written atomically every ``checkpoint_every`` steps and at the end (the potential at the
        reported θ next to it, same name, ``.mtp``, or ``.etn.json`` for an ETN). If it exists when the run
        starts, the run resumes from it and continues the same trajectory as an uninterrupted run (same θ, optimizer state, shuffling and history);
        ``epochs``, ``max_steps`` and ``time_limit`` may differ from the saved run's.
    max_steps : int, optional
        Stop after this many optimizer steps in total (counting those before a resume).
    time_limit : float, optional
        Wall-time budget (s, counting the time before a resume): stop after the first step that ends past it
        (``success`` is then False and the message says "wall-time budget of … s reached").
    stop : callable, optional
        Asked after every step; a non-empty return value (the name of a signal) ends the run there, checkpointed,
        with ``interrupted`` True. Ctrl-C (KeyboardInterrupt) inside a step ends it at the previous step.
    progress : callable or None
        Receives one line per epoch and per validation (a quantity the validation set has no labels of is
        shown as "—").

    Returns
    -------
    OptimizationResult
        ``x`` the reported θ (best on validation with early stopping), ``fun`` the full training loss there,
        ``nit`` steps, ``nfev`` equivalent full passes, ``success`` (False when the wall-time budget stopped the
        run; True when it ran its epochs or steps or stopped early), ``history`` rows per step (``step``, ``epoch``,
        ``batch_loss``, ``elapsed_s``; ``epoch_loss``, the mean batch loss, on an epoch's last step; validation
        errors when computed), ``epochs`` completed, ``state`` the optimizer's final state (its preconditioner
        statistics, for :mod:`mtpfit.analysis.hessian`), ``interrupted`` (stopped by ``stop`` or Ctrl-C).

    Raises
    ------
    ValueError
        Before training, if ``monitor`` is not an error of :func:`~mtpfit.metrics.error_metrics`, or if
        ``patience`` is given and no configuration of ``validation`` has the labels ``monitor`` needs (early
        stopping on ``epa_rmse`` with a validation set without energies, say), naming the set and ``monitor``.
    CheckpointError
        If ``checkpoint`` exists but is damaged, of another run (optimizer, model, batches) or already past
        ``epochs`` or ``max_steps``.
    FloatingPointError
        If a step produces NaN or infinity, or a batch loss over :data:`DIVERGENCE_FACTOR` times the run's first
        (naming the optimizer and step); the last checkpoint stays valid.
    """
    if validation:
        _check_monitor(validation, monitor, patience)
    say = progress or (lambda line: None)
    n_configs = len(objective.dataset)
    n_batches = -(-n_configs // batch_size)
    blocks = ParameterBlocks.of(objective.mtp)
    valid_objective = (Objective(objective.mtp, validation, objective.loss, objective.n_threads, objective.comm)
                       if validation else None)
    rng = np.random.default_rng(seed)
    params, state = np.array(x0, dtype=float), optimizer.init(np.array(x0, dtype=float), blocks)
    step = epoch = batch_index = 0
    order = None
    history: list[dict] = []
    best = {"value": np.inf, "x": None, "step": 0, "stale": 0}
    elapsed_before = passes_before = 0.0
    identity = {"kind": "mini-batch", "optimizer": optimizer.name, "n_params": objective.n_params,
                "n_configurations": n_configs, "batch_size": batch_size}
    budget = epochs * n_batches if max_steps is None else min(max_steps, epochs * n_batches)
    if checkpoint and writes_files():
        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    if checkpoint and Path(checkpoint).exists():
        params, state, meta = load_checkpoint(checkpoint)
        _check_saved(checkpoint, params, meta, identity, n_batches, budget)
        try:
            rng.bit_generator.state = meta["rng"]
        except (TypeError, ValueError, KeyError) as err:
            raise CheckpointError(f"{checkpoint}: invalid random-generator state ({err})") from None
        step, epoch, batch_index = meta["step"], meta["epoch"], meta["batch_index"]
        order = np.array(meta["order"], dtype=np.int64) if meta["order"] is not None else None
        history, elapsed_before, passes_before = meta["history"], meta["elapsed_s"], meta["passes"]
        best = {**meta["best"], "x": None if meta["best"]["x"] is None else np.array(meta["best"]["x"])}
        say(f"resumed from {checkpoint} at step {step} (epoch {epoch})")
        if step == budget:
            say(f"the checkpoint is at the end of this run's {budget} steps: nothing left to train")
    start = time.perf_counter() - elapsed_before
    passes_start = objective.passes - passes_before

    def save():
        meta = {**identity, "rng": rng.bit_generator.state, "step": step, "epoch": epoch,
                "batch_index": batch_index, "order": None if order is None else order.tolist(), "history": history,
                "elapsed_s": time.perf_counter() - start, "passes": objective.passes - passes_start,
                "best": {**best, "x": None if best["x"] is None else best["x"].tolist()}}
        save_checkpoint(checkpoint, params, state, meta)

    def validate(row) -> bool:
        """Record validation errors; True when early stopping says stop."""
        x_eval = optimizer.eval_params(state, params)
        errors = error_metrics(validation, valid_objective.predict(x_eval))["all"]
        row.update({f"val_{k}": errors[k] for k in ("epa_rmse", "force_rmse", "stress_rmse")})
        say(f"step {step:6d}  epoch {epoch:4d}  validation EPA RMSE "
            f"{shown(errors['epa_rmse'], '.3f', 'meV/atom', 1e3)}  force RMSE "
            f"{shown(errors['force_rmse'], '.4f', 'eV/Å')}")
        value = errors[monitor]
        if value is None:       # without patience the monitor is not needed: nothing to track
            return False
        if value < best["value"]:
            best.update(value=value, x=x_eval.copy(), step=step, stale=0)
        else:
            best["stale"] += 1
        return patience is not None and best["stale"] >= patience

    stop_message = f"{epochs} epochs done"
    stopped = out_of_time = interrupted = False
    last_validation = None
    while epoch < epochs and not stopped:
        if batch_index == 0:
            drawn_from = rng.bit_generator.state
            order = rng.permutation(n_configs)
        while batch_index < n_batches:
            if max_steps is not None and step >= max_steps:
                stop_message, stopped = f"max_steps = {max_steps} reached", True
                break
            batch = order[batch_index * batch_size:(batch_index + 1) * batch_size]
            try:
                loss, grad = objective.fun_and_jac(params, batch)
                if not np.isfinite(loss):
                    raise FloatingPointError(f"{optimizer.name}: loss is {loss} at step {step}")
                first = history[0]["batch_loss"] if history else loss
                if loss > DIVERGENCE_FACTOR * max(first, np.finfo(float).tiny):
                    # a finite but astronomic loss: θ has run away (LAMB's trust ratio at level 16 grew the loss
                    # to 1e236 in 120 s), and every later error would be meaningless
                    raise FloatingPointError(f"{optimizer.name}: the batch loss {loss:.3e} at step {step} is over "
                                             f"{DIVERGENCE_FACTOR:.0e} times the first one ({first:.3e}): diverged")
                try:
                    new_params, new_state = optimizer.step(grad, state, params)
                except FloatingPointError as err:
                    raise FloatingPointError(f"{err} (step {step + 1})") from None
            except KeyboardInterrupt:
                # inside a step: θ and the state are still those after the previous one; an epoch's order is
                # drawn again on resume, so the draw is undone
                stop_message, stopped, interrupted = f"interrupted by SIGINT at step {step}", True, True
                if batch_index == 0:
                    rng.bit_generator.state = drawn_from
                break
            params, state = new_params, new_state
            step += 1
            batch_index += 1
            row = {"step": step, "epoch": epoch, "batch_loss": loss, "elapsed_s": time.perf_counter() - start}
            end_of_epoch = batch_index == n_batches
            if end_of_epoch:
                # mean of this epoch's batch losses: the epoch's training loss, at no extra cost
                in_epoch = [r["batch_loss"] for r in history if r["epoch"] == epoch] + [loss]
                row["epoch_loss"] = float(np.mean(in_epoch))
            timed = validate_seconds and (last_validation is None
                                          or row["elapsed_s"] - last_validation >= validate_seconds)
            if valid_objective and ((validate_every and step % validate_every == 0)
                                    or (not validate_every and end_of_epoch) or timed):
                last_validation = row["elapsed_s"]
                if validate(row):
                    stop_message, stopped = f"early stopping: no improvement in {patience} validations", True
            history.append(row)
            if checkpoint and step % checkpoint_every == 0:
                save()
            if time_limit is not None and row["elapsed_s"] >= time_limit and not stopped:
                stop_message, stopped, out_of_time = f"wall-time budget of {time_limit:g} s reached", True, True
            signal = stop() if stop is not None and not stopped else None
            if signal:
                stop_message, stopped, interrupted = f"interrupted by {signal} at step {step}", True, True
            if stopped:
                break
        if batch_index == n_batches:
            batch_index = 0
            epoch += 1
            say(f"epoch {epoch:4d}  step {step:6d}  mean batch loss {history[-1]['epoch_loss']:.6e}  "
                f"{time.perf_counter() - start:8.1f} s")
    x = best["x"] if (patience is not None and best["x"] is not None) else optimizer.eval_params(state, params)
    if checkpoint:
        save()
        write_atomically(objective.model.copy(x), Path(checkpoint).with_suffix(objective.model.file_suffix))
    return OptimizationResult(x=x, fun=objective.fun(x), nit=step, nfev=objective.passes - passes_start,
                              success=not (out_of_time or interrupted), message=stop_message, history=history,
                              wall_time=time.perf_counter() - start, epochs=epoch, state=state,
                              interrupted=interrupted)



def _check_monitor(validation: Dataset, monitor: str, patience: int | None) -> None:
    """Refuse an unknown ``monitor``, and early stopping on an error ``validation`` has no labels for (it would
    never improve, so the run would stop after ``patience`` validations for no reason)."""
    if monitor not in _MONITORS:
        raise ValueError(f"unknown monitor {monitor!r}; choose from {', '.join(_MONITORS)}")
    needs, has = _MONITORS[monitor]
    if patience is not None and not any(has(c) for c in validation):
        raise ValueError(f"early stopping monitors {monitor!r}, but no configuration of the validation set "
                         f"{validation.name!r} has {needs}; monitor another error or label the validation set")


def _check_saved(path, params, meta, identity, n_batches, budget) -> None:
    """Refuse a mini-batch checkpoint of another run or at an impossible or out-of-budget position."""
    differs = {k: (meta.get(k), v) for k, v in identity.items() if meta.get(k) != v}
    if differs:
        text = "; ".join(f"{k}: saved {saved!r}, now {now!r}" for k, (saved, now) in differs.items())
        raise CheckpointError(f"{path}: written by another run ({text})")
    missing = [k for k in ("step", "epoch", "batch_index", "history", "rng", "order", "elapsed_s", "passes", "best")
               if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: no {', '.join(missing)} in the run position")
    step, epoch, batch_index, history = meta["step"], meta["epoch"], meta["batch_index"], meta["history"]
    check_position(path, step, history, budget, "step", "the epochs or max_steps")
    if not (isinstance(epoch, int) and isinstance(batch_index, int) and 0 <= batch_index <= n_batches
            and epoch * n_batches + batch_index == step):
        raise CheckpointError(f"{path}: epoch {epoch!r} and batch {batch_index!r} do not make step {step}")
    if params.shape != (identity["n_params"],):
        raise CheckpointError(f"{path}: θ has {params.size} entries, the model {identity['n_params']}")
    order = meta["order"]
    if order is not None and sorted(order) != list(range(identity["n_configurations"])):
        raise CheckpointError(f"{path}: the saved batch order is not a permutation of the configurations")
