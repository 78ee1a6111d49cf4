"""Campaign files: a grid of datasets × models × optimizers (with sweeps) × seeds, expanded into run specs.

A campaign is a TOML file::

    name = "agpd_bfgs"                     # results go to <results>/<name>/ (default results: next to the file)
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
    [loss]                                 # mtpfit.Loss keywords
    kind = "file"
    [[optimizers]]
    label = "scipy BFGS"
    name = "BFGS"                          # native-bfgs, a scipy method, LM, GN, a zoo name, or FIRST+FULLBATCH
    max_iter = 300                         # budget: max_iter, epochs (+ batch_size); max_seconds caps wall time;
                                           # refine_iter, refine_seconds: a hybrid's second stage
    init_interval = 1e-3                   # θ₀ uniform in ±a seeded by the run's seed (default: MLIP defaults)
    start = "resolve"                      # from θ₀: resolve (exact linear coefficients), species (species
                                           # energies only) or none; default resolve for full batch, species for
                                           # the mini-batch zoo; older files: species_fit = true/false
    hyper = { gtol = 1e-6 }                # optimizer keywords
    loss = { force_fraction = 0.5 }        # overrides of [loss] for this optimizer's runs
    sweep = { init_interval = [1e-4, 1e-2] }   # any key above, hyper.KEY or loss.KEY: one run per value

Every run is identified by the SHA-256 of its full specification; its result file is named by that hash.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Campaign", "load_campaign", "spec_hash"]

_OPTIMIZER_KEYS = {"label", "name", "max_iter", "epochs", "batch_size", "init_interval", "hyper", "loss",
                   "sweep", "start", "species_fit", "patience", "validate_every", "max_seconds", "refine_iter",
                   "refine_seconds"}
_STARTS = ("resolve", "species", "none")  # mtpfit.train.STARTS, not imported: reading a campaign needs no core
_TOP_KEYS = {"name", "description", "seeds", "threads_per_run", "results", "datasets", "models", "loss",
             "optimizers", "study", "budget_note"}


def spec_hash(spec: dict) -> str:
    """SHA-256 of the canonical JSON of a run specification (its result file's name)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
        return self.results / f"{spec_hash(spec)[:20]}.json"

    def pending(self) -> list[dict]:
        """Runs without a result file."""
        return [spec for spec in self.runs if not self.result_path(spec).exists()]

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


def load_campaign(path: str | Path, results: str | Path | None = None) -> Campaign:
    """Parse a campaign file and expand its grid.

    Raises
    ------
    ValueError
        Unknown keys, missing sections, or an empty grid, naming the file.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        config = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: {err}") from err
    unknown = set(config) - _TOP_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    for section in ("datasets", "models", "optimizers"):
        if not config.get(section):
            raise ValueError(f"{path}: the campaign needs a non-empty [{section}]")
    for k, opt in enumerate(config["optimizers"]):
        bad = set(opt) - _OPTIMIZER_KEYS
        if bad or "name" not in opt:
            raise ValueError(f"{path}: optimizer {k}: {'unknown keys ' + str(sorted(bad)) if bad else 'needs a name'}")
        starts = opt.get("sweep", {}).get("start", []) + ([opt["start"]] if "start" in opt else [])
        if any(v not in _STARTS for v in starts):
            raise ValueError(f"{path}: optimizer {k}: start is one of {', '.join(_STARTS)}, got {starts}")
    name = config.get("name", path.stem)
    seeds = config.get("seeds", [0])
    threads = int(config.get("threads_per_run", 1))
    runs = []
    for (dname, dentry), (mname, model), optimizer, seed in itertools.product(
            config["datasets"].items(), config["models"].items(),
            [v for opt in config["optimizers"] for v in _expand_sweep(opt)], seeds):
        runs.append({"campaign": name, "dataset": _dataset(dname, dentry),
                     "model": dict(model, name=mname), "loss": {**config.get("loss", {}), **optimizer.get("loss", {})},
                     "optimizer": optimizer, "seed": seed, "threads": threads})
    folder = Path(results) / name if results else (path.parent / config.get("results", "../results")).resolve() / name
    return Campaign(name, path, folder, runs, config.get("description", ""), config.get("study"))
