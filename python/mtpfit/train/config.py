"""The settings of one training run: what ``mtpfit train``, its TOML files, campaign runs and :func:`mtpfit.fit`
share, validated in one place."""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.dataset import Dataset
from ..optim import OPTIMIZERS
from ..potential.mtp import LEVELS, species_labels
from .full_batch import FULL_BATCH_METHODS
from .initial import STARTS

__all__ = ["TrainingConfig", "DEFAULT_TRAINER", "DEFAULT_TRAINERS", "canonical_optimizer"]

#: The trainer when none is named: variable projection with BFGS steps, chosen by time to accuracy
#: (benchmarks/RESULTS.md §7, level 16, one core per run). On mlearn Mo from MLIP's starting point it is ahead of
#: every trainer up to about two minutes (6.0 meV/atom test EPA RMSE at 120 s), and the README's main job (50
#: iterations, 49 s on two cores) reaches 6.04 meV/atom where varpro-LM's 25 iterations (43 s) reach 7.42. Over
#: longer budgets variable projection with Levenberg–Marquardt steps (``varpro-LM``) is ahead: 5.15 against 5.37 on
#: Mo and 1.94 against 2.24 meV/atom on the study's Ag–Pd from a random start at 300 s (where it passes the study's
#: native BFGS after 138 s on one core), and it alone passes the published MTP's test error on mlearn Si at level 24
#: within ten minutes; choose it for runs of minutes or more.
#: varpro needs no damping, sketch, learning rate or schedule of linear re-solves.
DEFAULT_TRAINER = "varpro"

#: The trainer of each model when none is named: the MTP's :data:`DEFAULT_TRAINER`; for the ETN Adam, chosen by the
#: validation errors within the study's 60 s budget on its Ag–Pd and MoNbTaVW tasks (campaigns 9 and 10,
#: benchmarks/RESULTS.md §14): the lowest force RMSE on three of the four Ag–Pd shapes and within 0.1 % of the best
#: EPA RMSE on MoNbTaVW, where SciPy BFGS fell from 6.8 to 27 meV/atom as the shapes grew and the ALS sweeps (each
#: core solve an exact JᵀWJ build, 30–70 s on Ag–Pd) managed one or two core solves. Muon is as good on the largest
#: shape.
DEFAULT_TRAINERS = {"mtp": DEFAULT_TRAINER, "etn": "adam"}


def canonical_optimizer(name: str) -> str:
    """NAME (full batch or zoo) or FIRST+FULLBATCH, spelled as the trainers are registered.

    Names match case-insensitively (``bfgs`` is ``BFGS``, ``Adam`` is ``adam``; mini-batch names also with ``-``
    for ``_``).

    Raises
    ------
    ValueError
        For an unknown name: the message suggests the closest ones and lists every trainer.
    """
    full_batch = {m.lower(): m for m in FULL_BATCH_METHODS}
    zoo = {spelling: m for m in OPTIMIZERS for spelling in (m.lower(), m.lower().replace("_", "-"))}
    every = {**zoo, **full_batch}
    first, plus, second = str(name).partition("+")

    def known(part, names, where):
        if part.lower() in names:
            return names[part.lower()]
        close = difflib.get_close_matches(part.lower(), list(names), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(names[c]) for c in close)}?" if close else "."
        raise ValueError(f"unknown {where} {part!r} in --optimizer {name!r}{hint} Full batch: "
                         f"{', '.join(FULL_BATCH_METHODS)}; mini-batch: {', '.join(sorted(OPTIMIZERS))}; "
                         f"or a hybrid FIRST+FULLBATCH such as adam+L-BFGS-B")

    if plus:
        return f"{known(first, every, 'optimizer')}+{known(second, full_batch, 'full-batch method after +')}"
    return known(first, every, "optimizer")


_PATHS = (str, os.PathLike)


@dataclass
class TrainingConfig:
    """Everything one training run is: data, model, loss, optimizer and budgets, and where its files go.

    The fields are the options of ``mtpfit train`` under their long names with ``_`` for ``-`` (so a TOML file for
    ``mtpfit train --config`` is this class's fields), plus the TOML-only tables ``schedule_options`` and
    ``hyper``. Construction checks types, ranges, contradictions and the hyperparameters the trainer takes
    (:func:`~mtpfit.train.fit.check_trainer`), so a bad setting fails before any data is read.

    Parameters
    ----------
    train, validation : list of path, or Dataset, optional
        Labelled files (any format :func:`mtpfit.io.read_configurations` reads) or a dataset already read. Without
        ``train`` the bundled ``dataset`` is used with its published split; without ``validation`` a seeded
        ``validation_fraction`` of ``train`` is held out (recorded in the run's ``split.json``).
    validation_fraction : float
        In (0, 1).
    format, stress_order, stress_units : str, optional
        Reader options (:func:`mtpfit.io.read_configurations`; ``None``: each format's own).
    dataset : str
        A bundled dataset (:data:`mtpfit.datasets.BUNDLED`).
    species : list of str or int, optional
        Species of the potential's types 0 … S−1 (element symbols, or ``.cfg`` type indices); for ``.cfg`` data,
        symbols name the types (type k is the k-th symbol). Default: those in the data, sorted.
    min_dist, max_dist : float, optional
        R_min and R_cut of the radial basis, Å (default 2.0 and 5.0; the bundled set's own).
    level, radial_basis_size : int
        MTP level (:data:`mtpfit.potential.mtp.LEVELS`) and radial basis functions per radial function.
    model : {"mtp", "etn"}
        The potential: a Moment Tensor Potential of ``level``, or an ETN tensor network
        (:class:`mtpfit.potential.etn.ETN`) of angular order ``etn_max_l``, ``etn_channels`` radial channels,
        ``etn_copies`` feature copies (body order + 1) and bond ranks ``etn_ranks`` (one integer for every bond, or
        a list of ``etn_copies`` − 1), with ``radial_basis_size``, ``min_dist`` and ``max_dist``; its θ is drawn
        from ``seed`` (:meth:`ETN.init_params`). An ETN trains with every trainer but varpro, varpro-LM and
        native-bfgs (they solve the MTP's linear system), and ``als`` (:func:`mtpfit.optim.als.als`) is for it
        alone; its default start is ``species``; its run folder holds ``trained.etn.json``.
    etn_max_l, etn_channels, etn_copies : int
        ETN shape (defaults 2, 4, 3); only with ``model = "etn"``.
    etn_ranks : int or list of int
        ETN bond ranks (default 4); only with ``model = "etn"``.
    init_potential : path, optional
        Start from this ``.mtp`` (an ETN: its ``.etn.json``).
    init_interval : float, optional
        Start from θ uniform in ±A (seeded by ``seed``), else MLIP's load defaults.
    start : {"resolve", "species", "none"}, optional
        :func:`mtpfit.train.starting_point` (default: per trainer; ``none`` with ``init_potential``).
    no_species_fit : bool
        Older spelling of ``start = "none"``.
    loss : {"mlip", "plain", "file"}
        :class:`mtpfit.Loss` kind; ``energy_weight``, ``force_weight``, ``stress_weight`` its multipliers,
        ``no_penalty`` drops the radial orthonormality penalty, ``no_average`` sums over configurations instead of
        averaging (the study's loss), ``force_fraction`` keeps force labels on that fraction of configurations,
        chosen with ``force_seed`` (default: ``seed``).
    optimizer : str, optional
        A full-batch trainer (:data:`mtpfit.train.FULL_BATCH_METHODS`), a mini-batch optimizer of the zoo
        (:data:`mtpfit.optim.OPTIMIZERS`) or a hybrid ``FIRST+FULLBATCH``; any capitalisation. Default: the
        model's (:data:`DEFAULT_TRAINERS`).
    max_iter, epochs, batch_size, refine_iter : int
        Budgets: full-batch iterations (the native BFGS's pre-training comes on top: ``pretrain_iter``, or
        ``skip_pretrain``), mini-batch epochs and configurations per batch, a hybrid's second-stage iterations.
    max_seconds, refine_seconds : float, optional
        Wall-time budget of the training (both stages of a hybrid), and the part of it kept for the second stage.
    geodesic, lm_tau, sketch, gtol : optional
        Options of LM (``geodesic``), LM and varpro-LM (``lm_tau``, ``sketch``) and scipy's methods (``gtol``).
    lr, clip, schedule, schedule_options : optional
        Mini-batch learning rate, gradient clipping, schedule name and its keywords.
    hyper : dict, optional
        Further keyword arguments of the optimizer: of the mini-batch optimizer when there is one (a hybrid's first
        stage), else of the full-batch trainer (a hybrid's second stage), e.g. ``{"b1": 0.8}``.
    validate_every, patience : int, optional
        Mini-batch validation interval (steps) and early-stopping patience (validations).
    validate_seconds : float, optional
        Also validate every this many seconds of training, with any trainer: the history rows of those
        iterations or steps get ``val_epa_rmse``, ``val_force_rmse`` and ``val_stress_rmse`` beside
        ``elapsed_s``, a time-to-accuracy curve. Each validation is one energy+forces pass over the validation set
        and counts in the wall-time budget.
    seed : int
        Seeds the validation split, ``init_interval``, ``force_fraction`` and mini-batch shuffling.
    threads : int
        OpenMP threads (0: all cores).
    log_every, checkpoint_every : int
        Iterations between printed train errors, and between checkpoints.
    output : path, optional
        The run folder; ``None`` writes nothing (no checkpoints either).
    resume, overwrite : bool
        Continue the run checkpointed in ``output`` / replace an earlier run there.
    quiet : bool
        No per-iteration lines.

    Raises
    ------
    ValueError
        For a value of the wrong type or range, an unknown optimizer (with the closest names) or contradicting
        options, naming the field.
    """

    train: Any = None
    validation: Any = None
    validation_fraction: float = 0.1
    format: str | None = None
    stress_order: str | None = None
    stress_units: str | None = None
    dataset: str = "mlearn-Mo"
    species: list | None = None
    min_dist: float | None = None
    max_dist: float | None = None
    level: int = 16
    radial_basis_size: int = 8
    model: str = "mtp"
    etn_max_l: int = 2
    etn_channels: int = 4
    etn_copies: int = 3
    etn_ranks: Any = 4
    init_potential: str | None = None
    init_interval: float | None = None
    start: str | None = None
    no_species_fit: bool = False
    loss: str = "mlip"
    energy_weight: float | None = None
    force_weight: float | None = None
    stress_weight: float | None = None
    no_penalty: bool = False
    no_average: bool = False
    force_fraction: float = 1.0
    force_seed: int | None = None
    optimizer: str | None = None
    max_iter: int = 1000
    pretrain_iter: int | None = None
    skip_pretrain: bool = False
    max_seconds: float | None = None
    refine_iter: int | None = None
    refine_seconds: float | None = None
    geodesic: bool = False
    lm_tau: float | None = None
    sketch: int | None = None
    gtol: float = 1e-8
    lr: float | None = None
    clip: float | None = None
    schedule: str | None = None
    schedule_options: dict | None = None
    hyper: dict | None = None
    batch_size: int = 32
    epochs: int = 100
    validate_every: int | None = None
    validate_seconds: float | None = None
    patience: int | None = None
    seed: int = 0
    threads: int = 0
    log_every: int = 10
    checkpoint_every: int | None = None
    output: str | None = "mtpfit-run"
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        for name in ("train", "validation"):
            value = getattr(self, name)
            if isinstance(value, _PATHS):
                setattr(self, name, [value])
            elif value is not None and not isinstance(value, Dataset):
                if not (isinstance(value, (list, tuple)) and value and all(isinstance(v, _PATHS) for v in value)):
                    raise ValueError(f"{name} must be a Dataset or a non-empty list of file names, got {value!r:.100}")
                setattr(self, name, list(value))
        if self.validation is not None and self.train is None:
            raise ValueError("validation is given without train")
        if self.species is not None:
            if not isinstance(self.species, (list, tuple)) or not self.species:
                raise ValueError(f"species must be a non-empty list, got {self.species!r:.100}")
            self.species = species_labels(self.species)
        if self.optimizer is None:
            self.optimizer = DEFAULT_TRAINERS.get(self.model, DEFAULT_TRAINER)   # an unknown model is refused below
        self.optimizer = canonical_optimizer(self.optimizer)
        _require(0.0 < self.validation_fraction < 1.0, "validation_fraction", "in (0, 1)", self.validation_fraction)
        _require(self.level in LEVELS, "level", f"one of {', '.join(map(str, LEVELS))}", self.level)
        self._check_model()
        _require(self.loss in ("mlip", "plain", "file"), "loss", "mlip, plain or file", self.loss)
        _require(self.start in (None, *STARTS), "start", f"one of {', '.join(STARTS)}", self.start)
        _require(0.0 < self.force_fraction <= 1.0, "force_fraction", "in (0, 1]", self.force_fraction)
        for name in ("radial_basis_size", "batch_size", "epochs"):
            _require(getattr(self, name) >= 1, name, "at least 1", getattr(self, name))
        for name in ("max_iter", "threads", "log_every", "pretrain_iter", "refine_iter", "sketch", "patience",
                     "validate_every", "checkpoint_every"):
            value = getattr(self, name)
            _require(value is None or value >= (1 if name in ("validate_every", "checkpoint_every") else 0), name,
                     "positive" if name in ("validate_every", "checkpoint_every") else "non-negative", value)
        for name in ("min_dist", "max_dist", "init_interval", "lr", "clip", "lm_tau", "gtol", "validate_seconds"):
            value = getattr(self, name)
            _require(value is None or value > 0, name, "positive", value)
        for name in ("energy_weight", "force_weight", "stress_weight", "max_seconds", "refine_seconds"):
            value = getattr(self, name)
            _require(value is None or value >= 0, name, "non-negative", value)
        if self.min_dist is not None and self.max_dist is not None and self.min_dist >= self.max_dist:
            raise ValueError(f"min_dist {self.min_dist} must be below max_dist {self.max_dist}")
        if self.no_species_fit and self.start not in (None, "none"):
            raise ValueError(f"no_species_fit (--no-species-fit) contradicts start {self.start!r}")
        if self.skip_pretrain and self.pretrain_iter:
            raise ValueError(f"skip_pretrain (--skip-pretrain) contradicts pretrain_iter {self.pretrain_iter}")
        if self.resume and self.overwrite:
            raise ValueError("resume (--resume) and overwrite (--overwrite) contradict each other")
        if (self.resume or self.overwrite) and self.output is None:
            raise ValueError("resume and overwrite need an output folder")
        if self.output is not None:
            self.output = os.fspath(self.output)
        if self.init_potential is not None:
            self.init_potential = os.fspath(self.init_potential)
        from .fit import check_trainer  # fit is built on this module

        check_trainer(self)

    def _check_model(self) -> None:
        """The ``model`` and its settings, and the trainers and start it allows."""
        from .full_batch import ETN_ONLY, LINEAR_MODEL_ONLY

        _require(self.model in ("mtp", "etn"), "model", "mtp or etn", self.model)
        ranks = self.etn_ranks
        if not (isinstance(ranks, int) and not isinstance(ranks, bool)) and not (
                isinstance(ranks, (list, tuple)) and ranks
                and all(isinstance(r, int) and not isinstance(r, bool) for r in ranks)):
            raise ValueError(f"etn_ranks must be an integer or a non-empty list of integers, got {ranks!r:.100}")
        etn_defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name.startswith("etn_")}
        if self.model == "mtp":
            changed = [k for k, v in etn_defaults.items() if getattr(self, k) != v]
            if changed:
                raise ValueError(f"{', '.join(changed)}: ETN settings, they need model = \"etn\" (--model etn)")
            wrong = [s for s in self.stages if s in ETN_ONLY]
            if wrong:
                raise ValueError(f"optimizer {wrong[0]!r} sweeps over the cores of an ETN: it needs model = \"etn\" "
                                 "(--model etn)")
            return
        _require(0 <= self.etn_max_l <= 10, "etn_max_l", "in 0 … 10", self.etn_max_l)
        _require(self.etn_channels >= 1, "etn_channels", "at least 1", self.etn_channels)
        _require(self.etn_copies >= 2, "etn_copies", "at least 2", self.etn_copies)
        if isinstance(ranks, (list, tuple)) and len(ranks) == 1:
            self.etn_ranks = ranks = ranks[0]      # --etn-ranks 3: every bond
        if isinstance(ranks, (list, tuple)):
            self.etn_ranks = list(ranks)
            _require(len(ranks) == self.etn_copies - 1, "etn_ranks",
                     f"one integer or a list of etn_copies - 1 = {self.etn_copies - 1} integers", ranks)
        _require(min(self.etn_ranks if isinstance(ranks, (list, tuple)) else [ranks]) >= 1, "etn_ranks",
                 "at least 1", ranks)
        wrong = [s for s in self.stages if s in LINEAR_MODEL_ONLY]
        if wrong:
            raise ValueError(f"optimizer {wrong[0]!r} solves the MTP's linear system, which an ETN (multilinear in "
                             "its cores) does not have: choose als, LM, GN, a scipy method or a mini-batch optimizer")
        if self.start == "resolve":
            raise ValueError("start 'resolve' (the exact linear re-solve) needs an MTP: an ETN starts from "
                             "'species' or 'none'")

    @property
    def stages(self) -> tuple[str, str]:
        """The trainer's first stage and a hybrid's second (``""`` for a single trainer)."""
        first, _, second = self.optimizer.partition("+")
        return first, second

    @property
    def starting(self) -> str:
        """The starting point (``start``, else ``none`` with ``no_species_fit`` or ``init_potential``, else the
        trainer's default)."""
        from .initial import default_start

        if self.no_species_fit:
            return "none"
        if self.start is None:
            return "none" if self.init_potential else default_start(self.optimizer, self.model)
        return self.start

    @property
    def pretrain(self) -> int:
        """The native BFGS's pre-training iterations (``pretrain_iter``; 0 with ``skip_pretrain``; default MLIP-2's
        75)."""
        import inspect

        from ..optim.native_bfgs import native_bfgs

        if self.skip_pretrain:
            return 0
        if self.pretrain_iter is None:
            return inspect.signature(native_bfgs).parameters["pretrain_iter"].default
        return self.pretrain_iter

    def to_dict(self) -> dict:
        """The settings as JSON/TOML values: file names as strings, a dataset given in memory by its name."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Dataset):
                value = f"<in memory: {value.name}>"
            elif isinstance(value, list) and value and isinstance(value[0], os.PathLike):
                value = [os.fspath(v) for v in value]
            out[f.name] = value
        return out

    def to_toml(self) -> str:
        """A TOML file that reproduces the run with ``mtpfit train --config``: every setting that differs from the
        default, file names made absolute, without ``output``, ``resume`` and ``overwrite``.

        Raises
        ------
        ValueError
            When the training data were given in memory (a TOML file can only name files).
        """
        import tomli_w

        if isinstance(self.train, Dataset) or isinstance(self.validation, Dataset):
            raise ValueError("the training data were given in memory: a TOML file can only name files")
        defaults = TrainingConfig(output=None)
        out = {}
        for key, value in self.to_dict().items():
            if key in ("output", "resume", "overwrite") or value is None or value == getattr(defaults, key):
                continue
            if key in ("train", "validation"):
                value = [str(Path(v).resolve()) for v in value]
            elif key == "init_potential":
                value = str(Path(value).resolve())
            out[key] = value
        return tomli_w.dumps(out)

    @classmethod
    def from_toml(cls, path, **overrides) -> "TrainingConfig":
        """The configuration of a TOML file (its keys are this class's fields), with ``overrides`` on top.

        Raises
        ------
        ValueError
            Naming the file: unreadable TOML, an unknown key (with the closest field names), a bad value.
        """
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        path = Path(path)
        try:
            settings = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, RecursionError, tomllib.TOMLDecodeError) as err:
            raise ValueError(f"{path}: {err}") from err
        known = {f.name for f in dataclasses.fields(cls)}
        for key in settings:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=2)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                raise ValueError(f"{path}: unknown option {key!r}{hint}")
        try:
            return cls(**{**settings, **overrides})
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: {err}") from None


def _require(ok: bool, name: str, wanted: str, value) -> None:
    if not ok:
        raise ValueError(f"{name} must be {wanted}, got {value!r:.100}")


def _check_type(name: str, value, annotation: str) -> None:
    """Check a field against the scalar kinds of its annotation (the data fields are checked by the caller)."""
    if name in ("train", "validation", "species", "etn_ranks") or value is None:
        return
    kinds = {"bool": ((bool,), "true or false"), "int": ((int,), "an integer"),
             "float": ((int, float), "a finite number"), "str": (_PATHS, "a string"), "dict": ((dict,), "a table")}
    words = [w for w in annotation.replace("|", " ").split() if w in kinds]
    allowed = tuple(t for w in words for t in kinds[w][0])
    ok = (isinstance(value, allowed) and not (isinstance(value, bool) and "bool" not in words)
          and not (isinstance(value, float) and not math.isfinite(value)))
    if not ok:
        raise ValueError(f"{name} must be {' or '.join(kinds[w][1] for w in words)}, got {value!r:.100}")
