"""One entry point for every full-batch trainer (the native BFGS, varpro, scipy's methods, the least-squares ones),
with progress, history, checkpoints, resume and clean stops."""
from __future__ import annotations

import functools
import inspect
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.dataset import Dataset
from ..metrics import error_metrics, shown
from ..objective.objective import Objective
from ..optim.als import als
from ..optim.least_squares import LEAST_SQUARES_METHODS
from ..optim.native_bfgs import native_bfgs
from ..optim.result import OptimizationResult
from ..optim.state import ResumeError
from ..optim.varpro import varpro
from ..optim.varpro_lm import varpro_lm
from .checkpoint import (CheckpointError, check_position, load_checkpoint, save_checkpoint, write_atomically,
                         writes_files)
from .scipy_trainer import SCIPY_METHODS, TrainingRun, scipy_minimize

__all__ = ["FULL_BATCH_METHODS", "LINEAR_MODEL_ONLY", "ETN_ONLY", "train_full_batch", "train_scipy", "finish_run",
           "check_options"]

#: The full-batch trainers by name. Each is ``trainer(objective, x0, max_iter=, time_limit=, callback=, **options)``
#: returning an OptimizationResult with ``history`` and ``wall_time``; a resumable one also takes ``resume=`` and puts
#: ``state`` in the results it gives its callback: a function returning a dict of arrays and JSON values with at least
#: ``nit``, ``history`` and ``elapsed_s``, from which ``resume`` continues. That is the one protocol by which
#: :func:`train_full_batch` checkpoints and resumes every trainer.
def _als(objective, x0, max_iter: int = 20, time_limit=None, callback=None, resume=None, **options):
    """:func:`~mtpfit.optim.als.als` with ``max_iter`` sweeps, under the trainers' common signature."""
    return als(objective, x0, sweeps=max_iter, time_limit=time_limit, callback=callback, resume=resume, **options)


TRAINERS = {"varpro": varpro, "varpro-LM": varpro_lm, "native-bfgs": native_bfgs,
            **{m: functools.partial(scipy_minimize, method=m) for m in SCIPY_METHODS}, **LEAST_SQUARES_METHODS,
            "als": _als}

#: Names of the full-batch trainers: variable projection with BFGS ("varpro") or Levenberg–Marquardt ("varpro-LM") steps,
#: the reference trainer's BFGS, scipy.optimize.minimize's methods, Levenberg–Marquardt ("LM") and Gauss–Newton ("GN"),
#: and the ETN's alternating least squares over its cores ("als", one sweep per iteration). The first three need an
#: MTP (a model linear in its coefficients), "als" an ETN (:data:`LINEAR_MODEL_ONLY`, :data:`ETN_ONLY`).
FULL_BATCH_METHODS = ("varpro", "varpro-LM", "native-bfgs") + SCIPY_METHODS + tuple(LEAST_SQUARES_METHODS) + ("als",)

#: Arguments every trainer gets from :func:`train_full_batch` itself, not from its options.
_GIVEN = frozenset({"objective", "x0", "max_iter", "sweeps", "method", "time_limit", "callback", "resume"})


def check_options(method: str, options: dict) -> None:
    """Check that the full-batch trainer ``method`` takes every one of ``options``.

    Raises
    ------
    ValueError
        For an option the trainer does not take, naming the ones it does.
    """
    # "als" is a thin wrapper that passes its options on to the sweeps, whose signature names them
    accepted = set(inspect.signature(als if method == "als" else TRAINERS[method]).parameters) - _GIVEN
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"trainer {method!r} has no option {', '.join(map(repr, unknown))}; it takes "
                         f"{', '.join(sorted(accepted))}")


#: Full-batch trainers that solve the MTP's linear system (variable projection, exact re-solves): not for an ETN.
LINEAR_MODEL_ONLY = frozenset({"varpro", "varpro-LM", "native-bfgs"})
#: Full-batch trainers that sweep over the cores of a tensor network: only for an ETN.
ETN_ONLY = frozenset({"als"})


def train_full_batch(objective: Objective, x0: np.ndarray, method: str = "BFGS", max_iter: int = 1000,
                     validation: Dataset | None = None, log_every: int = 10, checkpoint: str | Path | None = None,
                     checkpoint_every: int = 10, time_limit: float | None = None,
                     validate_seconds: float | None = None, stop: Callable[[], str | None] | None = None,
                     progress: Callable[[str], None] | None = print, **options) -> TrainingRun:
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
        Evaluated at the end, and every ``validate_seconds``.
    log_every : int
        Train errors are printed and added to the history every this many iterations (one energy+forces pass
        each); an error the training set has no labels of is printed as "—" and is None in the history.
    checkpoint : path, optional
        An ``.npz`` written atomically every ``checkpoint_every`` iterations and when the run ends or is stopped:
        θ, the trainer's state (inverse Hessian, damping, iterate, …), history. If it exists when the run starts,
        the run resumes from it and continues the trajectory of an uninterrupted run (bit for bit, given the
        same objective, ``x0``, options and thread count; ``max_iter`` and ``time_limit`` may differ). The
        potential at the checkpointed θ is written next to it (same name, ``.mtp``; ``.etn.json`` for an ETN), and
        at the end the trained one.
    checkpoint_every : int
        Iterations between checkpoints.
    time_limit : float, optional
        Wall-time budget (s, counting the time before a resume).
    validate_seconds : float, optional
        With ``validation``: after the first iteration and then at the first iteration ending at least this many
        seconds after the last validation, the validation errors of its θ are added to its history row
        (``val_epa_rmse``, ``val_force_rmse``, ``val_stress_rmse``; one energy+forces pass over the validation
        set, inside the budget), and kept in the checkpoint with the train errors.
    stop : callable, optional
        Asked after every iteration; a non-empty return value (the name of a signal, see
        :class:`~mtpfit.train.signals.StopSignals`) ends the run there, with the checkpoint and the outputs of
        the last iterate, ``success`` False and ``interrupted`` True. Ctrl-C (KeyboardInterrupt) in an iteration
        ends it at the previous one in the same way.
    progress : callable or None
        Receives one line per iteration.
    **options
        Passed to the method: :func:`~mtpfit.optim.varpro.varpro`, :func:`~mtpfit.optim.varpro_lm.varpro_lm`,
        :func:`~mtpfit.optim.native_bfgs.native_bfgs`,
        :func:`~mtpfit.train.scipy_trainer.scipy_minimize` (``gtol``),
        :func:`~mtpfit.optim.least_squares.levenberg_marquardt`,
        :func:`~mtpfit.optim.least_squares.gauss_newton` or :func:`~mtpfit.optim.als.als` (``ridge``, ``tau``, …).

    Returns
    -------
    TrainingRun

    Raises
    ------
    ValueError
        For an unknown method.
    CheckpointError
        If ``checkpoint`` exists but cannot be resumed from (damaged, another run's, beyond ``max_iter``, or a
        trainer that cannot resume), naming the file.
    FloatingPointError
        When the loss becomes non-finite (the run diverged).
    """
    if method not in TRAINERS:
        raise ValueError(f"unknown full-batch method {method!r}; choose from {', '.join(FULL_BATCH_METHODS)}")
    trainer = TRAINERS[method]
    say = progress or (lambda line: None)
    file = Path(checkpoint) if checkpoint else None
    identity = {"kind": "full-batch", "method": method, "options": json.loads(json.dumps(options)),
                "n_params": objective.n_params}
    resume, logged = None, {}
    if file is not None and writes_files():
        file.parent.mkdir(parents=True, exist_ok=True)
    if file is not None and file.exists():
        resume, logged = _load(file, identity, trainer)
        say(f"resumed from {file} at iteration {resume['nit']}")
    latest: dict = {"result": None}
    start = time.perf_counter()
    passes_before = objective.passes
    checked = None
    if validate_seconds and validation is not None:
        checked = Objective(objective.mtp, validation, objective.loss, objective.n_threads, objective.comm)
    validated = {"at": None}

    def report(r):
        latest["result"] = r
        phase = f"{r.phase:<8} " if "phase" in r else ""
        line = f"iter {r.nit:5d}  {phase}loss {r.fun:.6e}  {time.perf_counter() - start:8.1f} s"
        if log_every and r.nit % log_every == 0:
            m = error_metrics(objective.dataset, objective.predict(r.x))["all"]
            logged.setdefault(r.nit, {}).update(train_epa_rmse=m["epa_rmse"], train_force_rmse=m["force_rmse"])
            line += (f"  train EPA RMSE {shown(m['epa_rmse'], '.3f', 'meV/atom', 1e3)}  "
                     f"force RMSE {shown(m['force_rmse'], '.4f', 'eV/Å')}")
        now = time.perf_counter()
        if checked is not None and (validated["at"] is None or now - validated["at"] >= validate_seconds):
            m = error_metrics(validation, checked.predict(r.x))["all"]
            logged.setdefault(r.nit, {}).update({f"val_{k}": m[k] for k in ("epa_rmse", "force_rmse", "stress_rmse")})
            line += (f"  validation EPA RMSE {shown(m['epa_rmse'], '.3f', 'meV/atom', 1e3)}  "
                     f"force RMSE {shown(m['force_rmse'], '.4f', 'eV/Å')}")
            validated["at"] = time.perf_counter()
        say(line)
        if file is not None and checkpoint_every and r.nit % checkpoint_every == 0:
            _save(file, r, identity, logged, objective.mtp)
        signal = stop() if stop is not None else None
        if signal:
            latest["signal"] = signal
            raise StopIteration

    kwargs = {"resume": resume} if resume is not None else {}
    try:
        result = trainer(objective, x0, max_iter=max_iter, time_limit=time_limit, callback=report, **kwargs,
                         **options)
    except ResumeError as err:
        raise CheckpointError(f"{file}: {err}") from None
    except KeyboardInterrupt:
        result = _aborted(latest, objective.passes - passes_before, (stop() if stop is not None else None) or "SIGINT")
    last = latest["result"]
    if "signal" in latest:
        result.message = f"interrupted by {latest['signal']} after {result.nit} iterations"
        result.success = False
    if file is not None and last is not None:
        _save(file, last, identity, logged, objective.mtp)
    history = [{**row, **logged.get(row.get("iteration"), {})} for row in result.history]
    return finish_run(objective, result, history, result.wall_time, validation,
                      file.with_suffix(objective.model.file_suffix) if file is not None else None, "signal" in latest)


def train_scipy(objective: Objective, x0: np.ndarray, method: str = "BFGS", max_iter: int = 1000,
                gtol: float = 1e-8, validation: Dataset | None = None, log_every: int = 10,
                checkpoint: str | Path | None = None, checkpoint_every: int = 50, time_limit: float | None = None,
                progress: Callable[[str], None] | None = print) -> TrainingRun:
    """Minimise the objective with :func:`scipy.optimize.minimize`: :func:`train_full_batch` with one of
    :data:`~mtpfit.train.scipy_trainer.SCIPY_METHODS` (resumable bit for bit, see
    :func:`~mtpfit.train.scipy_trainer.scipy_minimize`).

    Raises
    ------
    ValueError
        For an unsupported method.
    """
    if method not in SCIPY_METHODS:
        raise ValueError(f"unknown scipy method {method!r}; choose from {SCIPY_METHODS}")
    return train_full_batch(objective, x0, method, max_iter=max_iter, validation=validation, log_every=log_every,
                            checkpoint=checkpoint, checkpoint_every=checkpoint_every, time_limit=time_limit,
                            progress=progress, gtol=gtol)


def run_errors(objective: Objective, validation: Dataset | None, x) -> dict:
    """:func:`~mtpfit.metrics.error_metrics` of θ = x on the training set and, when given, the validation set:
    ``{"train": …, "validation": …}``."""
    errors = {"train": error_metrics(objective.dataset, objective.predict(x))}
    if validation is not None:
        errors["validation"] = error_metrics(validation, Objective(objective.mtp, validation, objective.loss,
                                                                   objective.n_threads, objective.comm).predict(x))
    return errors


def finish_run(objective: Objective, result, history: list, wall: float, validation: Dataset | None,
               potential: str | Path | None, interrupted: bool = False) -> TrainingRun:
    """The :class:`TrainingRun` of a finished full-batch run: the trained potential (also written to
    ``potential`` when given), train and validation errors."""
    mtp = objective.mtp.copy(result.x)
    errors = run_errors(objective, validation, result.x)
    if potential:
        write_atomically(mtp, Path(potential))
    return TrainingRun(mtp, result, history, wall, errors, interrupted)



def _load(file: Path, identity: dict, trainer) -> tuple[dict, dict]:
    """The trainer state and the logged train errors of checkpoint ``file``, checked against this run."""
    params, state, meta = load_checkpoint(file)
    if "resume" not in inspect.signature(trainer).parameters:
        raise CheckpointError(f"{file}: {identity['method']} cannot resume from a checkpoint; start over "
                              "(delete the file) or use a resumable trainer")
    differs = {k: (meta.get(k), v) for k, v in identity.items() if meta.get(k) != v}
    if differs:
        text = "; ".join(f"{k}: saved {saved!r}, now {now!r}" for k, (saved, now) in differs.items())
        raise CheckpointError(f"{file}: written by another run ({text})")
    if params.shape != (identity["n_params"],):
        raise CheckpointError(f"{file}: θ has {params.size} entries, the model {identity['n_params']}")
    check_position(file, state.get("nit"), state.get("history", []), None, "iteration", "max_iter")
    logged = meta.get("train_errors")
    if not isinstance(logged, dict):
        raise CheckpointError(f"{file}: no train_errors record")
    return state, {int(k): v for k, v in logged.items()}


def _save(file: Path, r, identity: dict, logged: dict, mtp) -> None:
    """The checkpoint of iterate ``r`` (a trainer that gives no state gets only the potential)."""
    if "state" in r:
        save_checkpoint(file, r.x, r.state(), {**identity, "nit": r.nit,
                                               "train_errors": {str(k): v for k, v in logged.items()}})
    write_atomically(mtp.copy(r.x), file.with_suffix(mtp.file_suffix))


def _aborted(latest: dict, passes: float, signal: str) -> OptimizationResult:
    """The result of a run interrupted inside an iteration (KeyboardInterrupt after ``signal``): its last completed
    iterate."""
    r = latest["result"]
    if r is None:
        raise KeyboardInterrupt      # not one iteration done: nothing to keep
    latest["signal"] = signal
    state = r.state() if "state" in r else {"history": [], "elapsed_s": float("nan")}
    return OptimizationResult(x=r.x, fun=r.fun, nit=r.nit, nfev=passes, success=False, message="",
                              history=state["history"], wall_time=state["elapsed_s"])
