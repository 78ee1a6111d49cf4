"""Campaign files: a grid of datasets × models × optimizers (with sweeps) × seeds, expanded into run specs.

A campaign is a TOML file::

    name = "agpd_bfgs"                     # results go to <results>/<name>/ (default results: ../results
                                           # from the campaign file; `mtpfit bench` prints where)
    seeds = [1, 2, 3]
    threads_per_run = 1
    [datasets.AgPd]                        # train/validation files, or `file` + `validation_fraction`,
    train = "../../../shared/data/AgPd/train.json"   # or `bundled = "mlearn-Mo"`; paths relative to the file
    validation = "../../../shared/data/AgPd/validation.json"
    species = [0, 1]
    [models.l08]
    level = 8
    min_dist = 1.9
    max_dist = 5.0
    [models.etn]                           # an ETN: model = "etn" and TrainingConfig's etn_* keys
    model = "etn"
    etn_max_l = 2
    etn_ranks = 4
    [loss]                                 # mtpfit.Loss keywords
    kind = "file"
    [[optimizers]]
    label = "scipy BFGS"
    name = "BFGS"                          # native-bfgs, a scipy method, LM, GN, a zoo name, or FIRST+FULLBATCH
    max_iter = 300                         # budget: max_iter, epochs (+ batch_size); max_seconds caps wall time;
                                           # refine_iter, refine_seconds: a hybrid's second stage
    validate_seconds = 30                  # validation errors every 30 s of training: the run's time-to-accuracy
                                           # curve (result `curve`)
    init_interval = 1e-3                   # θ₀ uniform in ±a seeded by the run's seed (default: MLIP defaults)
    start = "resolve"                      # from θ₀: resolve (exact linear coefficients), species (species
                                           # energies only) or none; default resolve for full batch, species for
                                           # the mini-batch zoo; older files: species_fit = true/false
    hyper = { gtol = 1e-6 }                # optimizer keywords
    loss = { force_fraction = 0.5 }        # overrides of [loss] for this optimizer's runs
    sweep = { init_interval = [1e-4, 1e-2] }   # any key above, hyper.KEY or loss.KEY: one run per value
    models = ["l08"]                       # the [models] entries it runs on (default: all; e.g. als: ETNs only)

Every run is identified by the SHA-256 of its full specification; its result file is named by that hash and
checked whenever it is read (:mod:`mtpfit.bench.results`): a run whose file is damaged is run again.
"""
from __future__ import annotations

import copy
import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path

from .results import ResultFileError, read_result, result_name, spec_hash

__all__ = ["Campaign", "load_campaign", "spec_hash", "IdenticalSeedsWarning"]


class IdenticalSeedsWarning(UserWarning):
    """A campaign's seeds change nothing for one of its optimizers: its runs would repeat each other."""


def _seed_matters(optimizer: dict, etn: bool) -> bool:
    """Whether the run seed changes a run of this (expanded) optimizer entry: it draws θ₀ (``init_interval``, and
    always for an ETN, whose θ₀ is random) and shuffles the mini-batches of a zoo first stage; full-batch trainers
    are deterministic, a campaign's dataset split has its own ``split_seed`` and its force-label mask the loss's
    ``force_seed``."""
    from ..train.full_batch import FULL_BATCH_METHODS

    first = optimizer["name"].partition("+")[0].lower()
    return etn or "init_interval" in optimizer or first not in {m.lower() for m in FULL_BATCH_METHODS}

_OPTIMIZER_KEYS = {"label", "name", "max_iter", "epochs", "batch_size", "init_interval", "hyper", "loss",
                   "sweep", "start", "species_fit", "patience", "validate_every", "validate_seconds", "max_seconds",
                   "refine_iter", "refine_seconds", "models"}
_STARTS = ("resolve", "species", "none")  # mtpfit.train.STARTS, not imported: reading a campaign needs no core
_TOP_KEYS = {"name", "description", "seeds", "threads_per_run", "results", "datasets", "models", "loss",
             "optimizers", "study", "budget_note"}


@dataclass
class Campaign:
    """A parsed campaign: its name, folder for results, the study's expectations and the expanded runs."""

    name: str
    path: Path
    results: Path
    runs: list[dict]
    description: str = ""
    study: dict | None = None

    def result_path(self, spec: dict) -> Path:
        """The result file of a run."""
        return self.results / result_name(spec)

    def problem(self, spec: dict) -> str | None:
        """Why a run is to be run: None when it has a valid result file, else ``"no result file"`` or what is
        wrong with its file (see :mod:`mtpfit.bench.results`)."""
        path = self.result_path(spec)
        if not path.exists():
            return "no result file"
        try:
            read_result(path)
        except ResultFileError as err:
            return err.reason
        return None

    def pending(self) -> list[dict]:
        """Runs without a valid result file: never run, unfinished, or with a damaged file."""
        return [spec for spec in self.runs if self.problem(spec) is not None]

    def damaged(self) -> dict[Path, str]:
        """Result files of the campaign's runs that fail validation, with what is wrong with each."""
        problems = {self.result_path(spec): self.problem(spec) for spec in self.runs}
        return {path: why for path, why in problems.items() if why not in (None, "no result file")}

    def stale(self) -> list[Path]:
        """Result files in :attr:`results` that belong to no run of the campaign as it now reads (runs whose
        specification was changed or removed)."""
        current = {self.result_path(spec).name for spec in self.runs}
        return sorted(p for p in self.results.glob("*.json") if p.name not in current)


def _expand_sweep(optimizer: dict) -> list[dict]:
    sweep = optimizer.get("sweep", {})
    keys = sorted(sweep)
    out = []
    for values in itertools.product(*(sweep[k] for k in keys)):
        variant = copy.deepcopy({k: v for k, v in optimizer.items() if k != "sweep"})
        for key, value in zip(keys, values):
            section, _, sub = key.partition(".")
            if sub and section in ("hyper", "loss"):
                variant.setdefault(section, {})[sub] = value
            else:
                variant[key] = value
        variant["swept"] = dict(zip(keys, values))
        out.append(variant)
    return out


def _dataset(name: str, entry: dict) -> dict:
    # paths stay as written (relative to the campaign file): the run's hash must not depend on the checkout
    out = dict(entry, name=name)
    for key in ("train", "validation", "file"):
        if key in out and isinstance(out[key], str):
            out[key] = [out[key]]
    return out


_CLAIM_KEYS = {"text": str, "kind": str, "method": str, "than": str, "metric": str, "within": float, "model": str,
               "dataset": str}


def _check_claim(path, k: int, claim, fits) -> None:
    """One of ``[[study.claims]]`` (decided by :func:`mtpfit.bench.write_report`): text, kind, method and than
    present, kind and metric known, nothing else."""
    where = f"{path}: claim {k} of [[study.claims]]"
    if not isinstance(claim, dict):
        raise ValueError(f"{where} must be a table")
    missing = [key for key in ("text", "kind", "method", "than") if key not in claim]
    unknown = sorted(set(claim) - set(_CLAIM_KEYS))
    if missing or unknown:
        raise ValueError(f"{where}: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"] if unknown else [])))
    for key, value in claim.items():
        if not fits(value, _CLAIM_KEYS[key]):
            raise ValueError(f"{where}: {key} must be {'a number' if _CLAIM_KEYS[key] is float else 'a string'}")
    if claim["kind"] not in ("better", "faster") or claim.get("metric", "epa") not in ("epa", "force"):
        raise ValueError(f"{where}: kind must be 'better' or 'faster' and metric 'epa' or 'force'")
    if claim.get("within", 1.0) <= 0:
        raise ValueError(f"{where}: within must be positive")


#: Keys of ``[study]`` and their types: what the report reads (a typo would silently leave a figure out).
_STUDY_KEYS = {"best_epa": str, "best_force": str, "best_time": str, "conclusion": str, "claims": list,
               "references": dict, "published": dict}


def _check_study(path, study: dict, fits) -> None:
    """``[study]``: its known keys, each reference a table of ``epa`` and ``force`` (and optionally ``seconds``)
    numbers, ``published`` a table with the number ``epa_mae``."""
    unknown = sorted(set(study) - set(_STUDY_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown} in [study]; it takes {', '.join(_STUDY_KEYS)}")
    for key, value in study.items():
        if not fits(value, _STUDY_KEYS[key]):
            raise ValueError(f"{path}: [study] {key} has the wrong type")
    for name, ref in study.get("references", {}).items():
        if not (isinstance(ref, dict) and {"epa", "force"} <= set(ref) <= {"epa", "force", "seconds"}
                and all(fits(v, float) for v in ref.values())):
            raise ValueError(f"{path}: [study.references.\"{name}\"] must hold the numbers epa and force "
                             "(and seconds), nothing else")
    published = study.get("published")
    if published is not None and not (set(published) == {"epa_mae"} and fits(published["epa_mae"], float)):
        raise ValueError(f"{path}: [study] published must be {{ epa_mae = NUMBER }}")


def load_campaign(path: str | Path, results: str | Path | None = None) -> Campaign:
    """Parse a campaign file and expand its grid.

    Raises
    ------
    ValueError
        Naming the file: text that is not UTF-8 TOML; unknown keys or missing sections; a value of the wrong
        type (seeds are integers, each optimizer a table whose keys have the types of the module docstring, each
        swept key a non-empty list), dates, times, NaN or infinity anywhere; an empty grid or one of more than
        100000 runs.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    import json
    import math

    path = Path(path)
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, RecursionError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{path}: {err}") from err
    unknown = set(config) - _TOP_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    for section in ("datasets", "models", "optimizers"):
        if not config.get(section):
            raise ValueError(f"{path}: the campaign needs a non-empty [{section}]")
    # TOML's types, checked here so that expanding the grid, hashing the runs and running them cannot fail on them
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: dates, times, NaN and infinity are not campaign values") from None
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a non-empty list",
             dict: "a table"}

    def fits(value, kind) -> bool:  # bool is no int here, int is a float, lists are non-empty
        return (isinstance(value, bool) == (kind is bool) and isinstance(value, (int, float) if kind is float else kind)
                and (kind is not list or bool(value)))

    top = {"name": str, "description": str, "budget_note": str, "results": str, "seeds": list, "threads_per_run": int,
           "datasets": dict, "models": dict, "loss": dict, "study": dict, "optimizers": list}
    for key, kind in top.items():
        if key in config and not fits(config[key], kind):
            raise ValueError(f"{path}: {key} must be {names[kind]}")
    _check_study(path, config.get("study", {}), fits)
    for k, claim in enumerate(config.get("study", {}).get("claims", []), 1):
        _check_claim(path, k, claim, fits)
    if not all(fits(seed, int) for seed in config.get("seeds", [])) or config.get("threads_per_run", 1) < 1:
        raise ValueError(f"{path}: seeds must be integers and threads_per_run a positive integer")
    for section in ("datasets", "models"):
        if not all(isinstance(entry, dict) for entry in config[section].values()):
            raise ValueError(f"{path}: every entry of [{section}] must be a table")
    options = {"label": str, "name": str, "start": str, "species_fit": bool, "hyper": dict, "loss": dict, "sweep": dict,
               "models": list,
               **dict.fromkeys(("max_iter", "epochs", "batch_size", "patience", "validate_every", "refine_iter"), int),
               **dict.fromkeys(("init_interval", "max_seconds", "refine_seconds", "validate_seconds"), float)}
    n_runs = 0
    for k, opt in enumerate(config["optimizers"]):
        if not isinstance(opt, dict):
            raise ValueError(f"{path}: optimizer {k} must be a table ([[optimizers]])")
        bad = set(opt) - _OPTIMIZER_KEYS
        if bad or "name" not in opt:
            raise ValueError(f"{path}: optimizer {k}: {'unknown keys ' + str(sorted(bad)) if bad else 'needs a name'}")
        sweep = opt.get("sweep", {})
        values = list(opt.items()) + [
            (key, v) for key, swept in (sweep.items() if isinstance(sweep, dict) else []) if isinstance(swept, list)
            for v in swept]
        wrong = next((key for key, value in values if key in options and not fits(value, options[key])), None)
        if wrong is not None:
            raise ValueError(f"{path}: optimizer {k}: {wrong} must be {names[options[wrong]]}")
        for key, swept in sweep.items():
            section, _, sub = key.partition(".")
            if not (key in options and key != "sweep" or sub and section in ("hyper", "loss")) or not fits(swept, list):
                raise ValueError(f"{path}: optimizer {k}: sweep.{key} must be a non-empty list of values of an "
                                 "optimizer key, hyper.KEY or loss.KEY")
        unknown_models = sorted(set(map(str, opt.get("models", []))) - set(config["models"]))
        if unknown_models:
            raise ValueError(f"{path}: optimizer {k}: models {unknown_models} are not entries of [models]")
        starts = sweep.get("start", []) + ([opt["start"]] if "start" in opt else [])
        if any(v not in _STARTS for v in starts):
            raise ValueError(f"{path}: optimizer {k}: start is one of {', '.join(_STARTS)}, got {starts}")
        n_runs += math.prod(len(v) for v in sweep.values()) * len(opt.get("models", config["models"]))
    n_runs *= len(config["datasets"]) * len(config.get("seeds", [0]))
    if n_runs > 100_000:  # a typo, not a study, and expanding it would take minutes
        raise ValueError(f"{path}: the grid has {n_runs} runs, more than 100000")
    name = config.get("name", path.stem)
    seeds = config.get("seeds", [0])
    threads = int(config.get("threads_per_run", 1))
    runs = []
    for (dname, dentry), (mname, model), optimizer, seed in itertools.product(
            config["datasets"].items(), config["models"].items(),
            [v for opt in config["optimizers"] for v in _expand_sweep(opt)], seeds):
        if mname not in optimizer.get("models", [mname]):
            continue
        runs.append({"campaign": name, "dataset": _dataset(dname, dentry),
                     "model": dict(model, name=mname), "loss": {**config.get("loss", {}), **optimizer.get("loss", {})},
                     "optimizer": optimizer, "seed": seed, "threads": threads})
    if len(seeds) > 1:
        for opt in config["optimizers"]:
            etn = any(config["models"][m].get("model") == "etn" for m in opt.get("models", config["models"]))
            if not any(_seed_matters(v, etn) for v in _expand_sweep(opt)):
                warnings.warn(f"{path}: optimizer {opt.get('label', opt['name'])!r}: the seeds {seeds} give identical "
                              f"runs: {opt['name']} is deterministic and starts from a fixed θ₀ (no init_interval); "
                              "give init_interval to vary θ₀, or one seed", IdenticalSeedsWarning, stacklevel=2)
    folder = Path(results) / name if results else (path.parent / config.get("results", "../results")).resolve() / name
    return Campaign(name, path, folder, runs, config.get("description", ""), config.get("study"))
