"""One call that does what ``mtpfit train`` does: :func:`fit` reads the data, builds the potential and the loss,
starts, trains with the named trainer, reports errors and writes the run folder. The command line and the
campaign runner both go through it, so they cannot drift apart."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..data.dataset import Dataset
from ..data.neighbors import ShortDistanceWarning
from ..datasets import BUNDLED, load_bundled
from ..io import read_files
from ..metrics import format_errors
from ..objective import Loss, Objective
from ..objective.blas import single_threaded_blas
from ..optim import make_optimizer
from ..potential.etn import ETN
from ..potential.mtp import MTP
from ..potential.reader import read_potential
from .checkpoint import write_text_atomically
from .config import TrainingConfig
from .full_batch import FULL_BATCH_METHODS, check_options, finish_run, train_full_batch
from .hybrid import train_hybrid
from .initial import SELF_STARTING, starting_point
from .minibatch import train_minibatch
from .output import check_output, passes_summary, start_run, write_run
from .scipy_trainer import SCIPY_METHODS, TrainingRun

__all__ = ["fit", "TrainingData", "load_training_data", "budget_text", "check_trainer"]


@dataclass
class TrainingData:
    """The data of a run: training and validation sets, the potential's species and cutoffs, and how the
    validation set was chosen (``split``: the record written to ``split.json``)."""

    train: Dataset
    validation: Dataset
    species: list
    min_dist: float
    max_dist: float
    split: dict


def _sources(dataset: Dataset) -> list[str]:
    return [c.source for c in dataset]


def load_training_data(config: TrainingConfig) -> TrainingData:
    """Read (or take) the training and validation sets of ``config``, holding out a seeded fraction when no
    validation set is given.

    Raises
    ------
    FileNotFoundError, mtpfit.io.FormatError
        From the readers, naming the file.
    ValueError
        For a training set too small to split, or species that do not cover the data.
    """
    min_dist, max_dist = 2.0, 5.0
    # element symbols name .cfg types (type k is the k-th): those given, else those of the starting potential
    names = config.species if config.species and all(isinstance(s, str) for s in config.species) else None
    if names is None and config.init_potential:
        start = read_potential(config.init_potential)
        names = start.species if start.named else None
    if config.train is None:
        train, validation = load_bundled(config.dataset)
        _, _, _, species, min_dist, max_dist = BUNDLED[config.dataset]
        split = {"kind": "published", "dataset": config.dataset, "train": _sources(train),
                 "validation": _sources(validation)}
    else:
        train = (config.train if isinstance(config.train, Dataset)
                 else read_files(config.train, config.format, config.stress_order, names, config.stress_units))
        if config.validation is not None:
            validation = (config.validation if isinstance(config.validation, Dataset)
                          else read_files(config.validation, config.format, config.stress_order, names,
                                          config.stress_units))
            split = {"kind": "given", "train": _sources(train), "validation": _sources(validation)}
        else:
            kept, held = train.split_indices(config.validation_fraction, seed=config.seed)
            whole = train
            train = whole.subset(kept, f"{whole.name}[train]")
            validation = whole.subset(held, f"{whole.name}[validation]")
            split = {"kind": "random", "validation_fraction": config.validation_fraction, "seed": config.seed,
                     "of": whole.name, "n_configurations": len(whole),
                     "train_indices": kept.tolist(), "validation_indices": held.tolist(),
                     "train": _sources(train), "validation": _sources(validation)}
        species = names or train.species()
    species = config.species or species
    return TrainingData(train, validation, list(species), config.min_dist or min_dist, config.max_dist or max_dist,
                        split)


def _potential(config: TrainingConfig, data: TrainingData):
    if config.init_potential:
        start = read_potential(config.init_potential)
        kind = "etn" if isinstance(start, ETN) else "mtp"
        if kind != config.model:
            raise ValueError(f"init_potential {config.init_potential} is an {kind.upper()}, but model is "
                             f"{config.model!r}")
        return start.named_for(data.train.species() + data.validation.species(), given=config.species)
    if config.model == "etn":
        etn = ETN(data.species, radial_basis_size=config.radial_basis_size, max_l=config.etn_max_l,
                  channels=config.etn_channels, copies=config.etn_copies, ranks=config.etn_ranks,
                  min_dist=data.min_dist, max_dist=data.max_dist)
        return etn.copy(etn.init_params(seed=config.seed))   # seeded: a resumed run starts from the same θ
    return MTP.from_level(config.level, species=data.species, min_dist=data.min_dist, max_dist=data.max_dist,
                          radial_basis_size=config.radial_basis_size)


def _loss(config: TrainingConfig) -> Loss:
    return Loss(kind=config.loss, energy=config.energy_weight, forces=config.force_weight,
                stress=config.stress_weight, penalty=not config.no_penalty, average=not config.no_average,
                force_fraction=config.force_fraction,
                force_seed=config.seed if config.force_seed is None else config.force_seed)


def budget_text(config: TrainingConfig) -> str:
    """The budget line: iterations (the native BFGS's pre-training on top), epochs, the wall-time budget."""
    first, second = config.stages

    def iterations(method: str, n: int) -> str:
        if method != "native-bfgs":
            return f"max {n} iterations"
        pretrain = config.pretrain
        return f"max {pretrain} pre-training + {n} iterations" if pretrain else f"max {n} iterations, no pre-training"

    budget = (iterations(first, config.max_iter) if first in FULL_BATCH_METHODS
              else f"{config.epochs} epochs of batches of {config.batch_size}")
    if second:
        n = config.max_iter if config.refine_iter is None else config.refine_iter
        budget += f", then {iterations(second, n)} of {second}"
    if config.max_seconds is not None:
        budget += f", wall-time budget {config.max_seconds:g} s"
    return budget


def _method_options(config: TrainingConfig, method: str, hyper: dict) -> dict:
    """Keyword arguments of the full-batch trainer ``method``: its own options from ``config``, then ``hyper``."""
    if method == "native-bfgs":
        own = {"pretrain_iter": config.pretrain}
    elif method == "LM":
        own = {k: v for k, v in (("geodesic", config.geodesic), ("sketch", config.sketch), ("tau", config.lm_tau))
               if v}
    elif method == "varpro-LM":
        own = {k: v for k, v in (("sketch", config.sketch), ("tau", config.lm_tau)) if v is not None}
    elif method in SCIPY_METHODS:
        own = {"gtol": config.gtol}
    else:
        own = {}
    return {**own, **hyper}


def _zoo_optimizer(config: TrainingConfig, name: str):
    hyper = {k: getattr(config, k) for k in ("lr", "clip") if getattr(config, k) is not None}
    if config.schedule:
        hyper.update(schedule=config.schedule, schedule_options=config.schedule_options or {})
    return make_optimizer(name, **{**hyper, **(config.hyper or {})})


def check_trainer(config: TrainingConfig) -> None:
    """Build what the trainer of ``config`` takes from its settings alone: the mini-batch optimizer, or the options
    of a full-batch trainer, routed to its stages as :func:`fit` routes them (``hyper`` to the mini-batch stage of
    a hybrid, else to its last stage).

    :class:`~mtpfit.train.config.TrainingConfig` calls it when it is made, so an unknown hyperparameter fails
    before the data are read and the training set's representation is built (minutes on a large set), and a
    campaign refuses a bad run before any of its runs starts.

    Raises
    ------
    ValueError
        For an unknown hyperparameter or trainer option, naming the optimizer.
    """
    first, second = config.stages
    hyper = config.hyper or {}
    zoo_first = first not in FULL_BATCH_METHODS
    if zoo_first:
        _zoo_optimizer(config, first)
    else:
        check_options(first, _method_options(config, first, {} if second else hyper))
    if second:
        check_options(second, _method_options(config, second, {} if zoo_first else hyper))


def _train(config: TrainingConfig, objective: Objective, x0: np.ndarray, validation: Dataset, stop,
           progress) -> TrainingRun:
    first, second = config.stages
    output = None if config.output is None else Path(config.output)
    every = {} if config.checkpoint_every is None else {"checkpoint_every": config.checkpoint_every}
    hyper = config.hyper or {}
    if second:
        zoo_first = first not in FULL_BATCH_METHODS
        return train_hybrid(objective, _zoo_optimizer(config, first) if zoo_first else first, second, x0,
                            epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                            validation=validation, patience=config.patience, max_iter=config.max_iter,
                            refine_iter=config.refine_iter, checkpoint_dir=output, time_limit=config.max_seconds,
                            refine_time=config.refine_seconds, validate_seconds=config.validate_seconds,
                            stop=stop, progress=progress,
                            first_options={} if zoo_first else _method_options(config, first, {}),
                            **every, **_method_options(config, second, {} if zoo_first else hyper))
    if first in FULL_BATCH_METHODS:
        return train_full_batch(objective, x0, first, max_iter=config.max_iter, validation=validation,
                                log_every=config.log_every,
                                checkpoint=None if output is None else output / "checkpoint.npz",
                                time_limit=config.max_seconds, validate_seconds=config.validate_seconds, stop=stop,
                                progress=progress, **every, **_method_options(config, first, hyper))
    result = train_minibatch(objective, _zoo_optimizer(config, first), x0, epochs=config.epochs,
                             batch_size=config.batch_size, seed=config.seed, validation=validation,
                             validate_every=config.validate_every, validate_seconds=config.validate_seconds,
                             patience=config.patience,
                             checkpoint=None if output is None else output / "checkpoint.npz",
                             time_limit=config.max_seconds, stop=stop, progress=progress, **every)
    return finish_run(objective, result, result.history, result.wall_time, validation, None, result.interrupted)


def fit(config: TrainingConfig | dict | None = None, /, *, log: Callable[[str], None] | None = None, comm=None,
        stop=None, inspection: bool = True, **settings) -> TrainingRun:
    """Train an MTP as ``mtpfit train`` does.

    Parameters
    ----------
    config : TrainingConfig or dict, optional
        The run's settings; keyword arguments (the fields of :class:`~mtpfit.train.config.TrainingConfig`) are
        applied on top, so ``fit(train=["train.cfg"], level=10, optimizer="varpro", max_iter=50)`` works alone.
    log : callable, optional
        Receives the progress lines (``print`` on the command line); per-iteration lines too unless ``quiet``.
    comm : communicator, optional
        MPI data parallelism (:func:`mtpfit.parallel.world`): every rank trains the same θ on its shard; only
        rank 0 writes.
    stop : callable, optional
        Asked after every step; a non-empty answer stops the run there with its outputs and checkpoint written
        (:class:`mtpfit.train.signals.StopSignals`, whose first signal then stops rather than interrupts).
    inspection : bool
        Also write the files for judging the fit: ``split.json``, the predictions, ``parity.png``, ``loss.png`` and
        ``config.toml``. :func:`mtpfit.train.tune.tune` leaves them out of the runs it does not keep: the plots
        alone take about a second per run.

    Returns
    -------
    TrainingRun
        The trained potential, the trainer's result, the history, the wall time, train and validation errors,
        and ``files``: the paths written (none without ``output``). The run folder holds ``run.json`` (settings),
        ``trained.mtp`` (an ETN: ``trained.etn.json``), ``metrics.json``, ``history.csv``, the checkpoint,
        and with ``inspection``: ``split.json`` (which configurations were held out), ``predictions_train`` /
        ``predictions_validation`` (extxyz, or ``.cfg`` for unnamed species), ``parity.png``, ``loss.png`` and
        ``config.toml`` (reproduces the run with ``mtpfit train --config``; not when the data were given in
        memory).

    Raises
    ------
    ValueError
        For bad settings (before any data is read), an output folder that holds another run (without ``resume`` or
        ``overwrite``), or data the potential cannot use.
    FileNotFoundError, mtpfit.io.FormatError
        From the readers.
    FloatingPointError
        When training diverges to a non-finite loss.
    """
    if isinstance(config, dict):
        config = TrainingConfig(**{**config, **settings})
    elif config is None:
        config = TrainingConfig(**settings)
    elif settings:
        config = dataclasses.replace(config, **settings)
    say = log or (lambda line: None)
    rank0 = comm is None or comm.rank == 0
    first, second = config.stages
    output = None if config.output is None else Path(config.output)
    settings_record = {**config.to_dict(), "start": config.starting}
    if output is not None:
        check_output(output, config.resume, config.overwrite, "stage1.npz" if second else "checkpoint.npz")
        if config.resume:
            start_run(output, settings_record, resume=True)
    data = load_training_data(config)
    mtp = _potential(config, data)
    say(f"mtpfit {__version__}: {data.train} / validation {data.validation}")
    say(f"{mtp}, {config.optimizer}, {budget_text(config)}")
    began = time.perf_counter()
    objective = Objective(mtp, data.train, _loss(config), n_threads=config.threads, comm=comm)
    shard = (f" ({comm.size} MPI ranks, {len(objective.shard)} configurations on rank 0)"
             if comm is not None and comm.size > 1 else "")
    say(f"training-set representation built in {time.perf_counter() - began:.1f} s{shard}")
    x0 = mtp.theta if config.init_interval is None else mtp.init_params(config.init_interval, config.seed)
    start, start_seconds = config.starting, 0.0
    if first in SELF_STARTING:
        start = "by the trainer"  # varpro and the native BFGS re-solve their own start
    elif start != "none":
        began = time.perf_counter()
        x0 = starting_point(objective, x0, start, method=config.optimizer)
        start_seconds = time.perf_counter() - began
        what = ("exact linear re-solve of the species and moment coefficients" if start == "resolve"
                else "species energies fitted to the energies")
        say(f"starting point: {what} ({start_seconds:.1f} s)")
    if output is not None and not config.resume:
        start_run(output, settings_record, resume=False)
    if comm is not None:
        comm.bcast(None)  # no rank reads the folder before rank 0 has cleared it
    progress = None if config.quiet else log
    training = stop.training() if hasattr(stop, "training") else contextlib.nullcontext()
    with training, single_threaded_blas():
        run = _train(config, objective, x0, data.validation, stop, progress)
        run.config, run.start, run.start_seconds = config, start, start_seconds
        if output is not None and inspection:
            # every rank predicts: under MPI a prediction gathers the shards of all ranks
            theta = run.mtp.theta
            with warnings.catch_warnings():
                # the trainer's validation errors built this set already and named its close atoms
                warnings.simplefilter("ignore", ShortDistanceWarning)
                validation = Objective(run.mtp, data.validation, objective.loss, objective.n_threads, objective.comm)
            predictions = {"train": objective.predict(theta), "validation": validation.predict(theta)}
        if output is not None and rank0:
            settings_record.update(species=[str(s) for s in data.species], n_params=mtp.n_params,
                                   min_dist=data.min_dist, max_dist=data.max_dist, train=str(data.train.name),
                                   validation=str(data.validation.name))
            run.files = write_run(run, output, settings_record)
            if inspection:
                run.files.update(_write_inspection(run, output, data, config, predictions))
    r = run.result
    say(f"\n{config.optimizer}: {r.message} ({r.nit} iterations, {passes_summary(r, config.optimizer)}, "
        f"{run.wall_time:.1f} s, final loss {r.fun:.6e})")
    say(format_errors(run.errors["train"], "Training errors"))
    say(format_errors(run.errors["validation"], f"Validation errors ({data.validation.name})"))
    if run.files:
        say("wrote " + ", ".join(str(p) for p in run.files.values()))
    return run


def _write_inspection(run: TrainingRun, output: Path, data: TrainingData, config: TrainingConfig,
                      predictions: dict) -> dict[str, Path]:
    """The files for judging a fit: which configurations were held out, predictions, parity and loss plots, and
    the TOML that reproduces the run."""
    from ase.data import atomic_numbers

    from ..analysis.parity import loss_curve_plot, parity_plot
    from ..io.write import write_predictions

    paths = {"split": output / "split.json"}
    write_text_atomically(paths["split"], json.dumps(data.split, indent=1, ensure_ascii=False))
    # extxyz needs element symbols; type indices (or names that are no elements) go to .cfg
    named = all(isinstance(s, str) and s in atomic_numbers for s in run.mtp.species)
    sets = {"train": data.train, "validation": data.validation}
    for part, dataset in sets.items():
        path = output / f"predictions_{part}.{'extxyz' if named else 'cfg'}"
        write_predictions(path, dataset, predictions[part], species=run.mtp.species)
        paths[f"predictions_{part}"] = path
    paths["parity"] = parity_plot(output / "parity.png", {k: (sets[k], predictions[k]) for k in sets})
    paths["loss_curve"] = loss_curve_plot(output / "loss.png", run.history, run.errors)
    if not (isinstance(config.train, Dataset) or isinstance(config.validation, Dataset)):
        paths["config"] = output / "config.toml"
        write_text_atomically(paths["config"], config.to_toml())
    return paths
