"""``mtpfit tune``: choose a trainer and its learning rate on the user's data under one wall-time budget, by
successive halving (Jamieson & Talwalkar, AISTATS 2016; the inner loop of Hyperband, Li et al., JMLR 18 (2018)
185) over :func:`mtpfit.fit` runs that resume from their checkpoints."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.dataset import Dataset
from ..metrics import shown
from .checkpoint import write_text_atomically
from .config import TrainingConfig
from .fit import TrainingData, fit, load_training_data
from .output import _clean
from .full_batch import LINEAR_MODEL_ONLY

__all__ = ["tune", "TuneResult", "Trial", "default_candidates", "parse_candidate", "format_ranking", "METRICS"]

#: Validation errors a ranking can use: ``epa`` (EPA RMSE), ``force`` (force RMSE) or ``both``.
METRICS = {"epa": ("epa_rmse",), "force": ("force_rmse",), "both": ("epa_rmse", "force_rmse")}

#: Full-batch trainers of the default candidates, by the errors they reached in the benchmarks
#: (benchmarks/RESULTS.md): variable projection with LM and BFGS steps, LM, the reference trainer's BFGS, SciPy BFGS.
FULL_BATCH_CANDIDATES = ("varpro-LM", "varpro", "LM", "native-bfgs", "BFGS")

#: Mini-batch optimizers of the default candidates, each at :data:`LEARNING_RATES`. Left out: LAMB (its trust
#: ratio ‖θ‖/‖u‖ scales every step by ‖θ‖: at 1e-3 it stalls for a minute at level 16, at 1e-2 it stays noisy,
#: at its MTP default 0.1 it diverges; benchmarks/RESULTS.md §15), schedule-free SGD
#: (everything from 1e-3 up diverged; default 1e-4), plain SGD (momentum is SGD with momentum) and the variants of
#: Muon, SOAP and Lookahead (:mod:`mtpfit.optim.zoo`).
MINIBATCH_CANDIDATES = ("adam", "adamw", "radam", "ranger", "schedule_free_adamw", "muon", "soap", "momentum")

#: Learning rates of each mini-batch candidate: the decade around the zoo's MTP defaults (1e-3 … 1e-2).
LEARNING_RATES = (1e-3, 3e-3, 1e-2)

#: TrainingConfig fields a candidate may not set: the data (every candidate ranks on the same validation set) and
#: what the tuning sets itself.
_NOT_CANDIDATE_FIELDS = frozenset({"train", "validation", "validation_fraction", "format", "stress_order",
                                   "stress_units", "dataset", "species", "min_dist", "max_dist", "max_seconds",
                                   "output", "resume", "overwrite"})


def default_candidates(model: str = "mtp") -> list[dict]:
    """The default candidates of :func:`tune`: 29 for an MTP.

    :data:`FULL_BATCH_CANDIDATES` with their defaults, then each of :data:`MINIBATCH_CANDIDATES` at each of
    :data:`LEARNING_RATES`. For an ETN the trainers that solve the MTP's linear system (varpro, varpro-LM,
    native-bfgs) are replaced by its alternating least squares (``als``): 27 candidates.

    Parameters
    ----------
    model : {"mtp", "etn"}

    Returns
    -------
    list of dict
        TrainingConfig overrides, e.g. ``{"optimizer": "adam", "lr": 0.003}``.
    """
    full = [m for m in FULL_BATCH_CANDIDATES if model != "etn" or m not in LINEAR_MODEL_ONLY]
    if model == "etn":
        full.append("als")
    return ([{"optimizer": m} for m in full]
            + [{"optimizer": m, "lr": lr} for m in MINIBATCH_CANDIDATES for lr in LEARNING_RATES])


def parse_candidate(text: str) -> dict:
    """A candidate written ``NAME`` or ``NAME:LR`` (``adam:3e-3``, ``varpro-LM``) as TrainingConfig overrides.

    Raises
    ------
    ValueError
        For an empty name or a learning rate that is not a positive number.
    """
    name, colon, lr = str(text).partition(":")
    if not name.strip():
        raise ValueError(f"candidate {text!r}: no optimizer name (write NAME or NAME:LR, e.g. adam:3e-3)")
    if not colon:
        return {"optimizer": name.strip()}
    try:
        rate = float(lr)
    except ValueError:
        raise ValueError(f"candidate {text!r}: the learning rate {lr!r} is not a number (write NAME:LR, e.g. "
                         "adam:3e-3)") from None
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"candidate {text!r}: the learning rate must be a positive number, got {lr!r}")
    return {"optimizer": name.strip(), "lr": rate}


@dataclass
class Trial:
    """One candidate in one round.

    Attributes
    ----------
    candidate : str
        Its label, e.g. ``"adam:0.003"``.
    round : int
        0-based.
    budget : float
        The cumulative wall-time budget of its training after this round (``max_seconds``), s.
    seconds : float
        Training seconds this round cost: the growth of the trainer's wall time, or for a diverged run the whole
        :func:`mtpfit.fit` call.
    wall_time : float or None
        Its training's wall time so far, s (None when it diverged).
    iterations : int or None
        Iterations (mini-batch: steps) so far.
    epa_rmse, force_rmse : float or None
        Validation EPA RMSE (eV/atom) and force RMSE (eV/Å, per component).
    status : {"trained", "diverged", "no time left"}
        "no time left": not run this round, as its training had already used the round's budget (the errors are
        the previous round's).
    message : str
        The trainer's stop message, or the divergence.
    score : float
        The ranking value (lower is better; ``inf`` ranks last), see :func:`tune`.
    rank : int
        1-based place in this round.
    kept : bool
        Goes on to the next round (or, in the last round, is the winner).
    """

    candidate: str
    round: int
    budget: float
    seconds: float
    wall_time: float | None
    iterations: int | None
    epa_rmse: float | None
    force_rmse: float | None
    status: str
    message: str
    score: float = math.inf
    rank: int = 0
    kept: bool = False


@dataclass
class TuneResult:
    """What :func:`tune` found.

    Attributes
    ----------
    rounds : list of list of Trial
        Each round's trials, best first.
    winner : str
        The label of the winning candidate.
    config : TrainingConfig
        The winner's configuration as ``best.toml`` holds it: the base settings with the winner's overrides,
        ``max_seconds`` its final budget, file names absolute, ``output`` the default, no resume or overwrite.
    run : Path
        The winner's run folder (its ``trained.mtp``: the potential the tuning trained).
    seconds : float
        Training seconds spent in all (see :attr:`Trial.seconds`).
    elapsed : float
        Wall time of the whole tuning, s, with the set-up and the files of every run.
    budget : float
        The budget asked for, s.
    json : Path
        ``tune.json``: the settings, the candidates and every round.
    toml : Path or None
        ``best.toml`` (None when the data were given in memory: a TOML file can only name files).
    candidates : dict
        Label → TrainingConfig overrides.
    """

    rounds: list
    winner: str
    config: TrainingConfig
    run: Path
    seconds: float
    elapsed: float
    budget: float
    json: Path
    toml: Path | None
    candidates: dict = field(default_factory=dict)


def _label(overrides: dict) -> str:
    """``adam:0.003``, ``varpro-LM``, further overrides as ``key=value``."""
    text = str(overrides["optimizer"]) + (f":{overrides['lr']:g}" if overrides.get("lr") is not None else "")
    rest = [f"{k}={v}" for k, v in overrides.items() if k not in ("optimizer", "lr")]
    return " ".join([text, *rest])


def _candidate_configs(base: TrainingConfig, candidates: list) -> dict[str, tuple[dict, TrainingConfig]]:
    """Label → (overrides, configuration) of each candidate, checked before anything is trained."""
    known = {f.name for f in dataclasses.fields(TrainingConfig)}
    out = {}
    for given in candidates:
        overrides = parse_candidate(given) if isinstance(given, str) else given
        if not isinstance(overrides, dict) or "optimizer" not in overrides:
            raise ValueError(f"candidate {given!r}: expected NAME[:LR] or a dict of TrainingConfig settings with "
                             "an 'optimizer'")
        unknown = sorted(set(overrides) - known)
        refused = sorted(set(overrides) & _NOT_CANDIDATE_FIELDS)
        if unknown or refused:
            raise ValueError(f"candidate {given!r}: " + (f"unknown setting(s) {unknown}" if unknown else
                             f"{refused} are the tuning's (the data and budgets are the same for every candidate)"))
        try:
            config = dataclasses.replace(base, **overrides)
        except ValueError as err:
            raise ValueError(f"candidate {given!r}: {err}") from None
        overrides = {**overrides, "optimizer": config.optimizer}   # as the trainers are registered
        label = _label(overrides)
        if label in out:
            raise ValueError(f"candidate {label!r} is given twice")
        out[label] = (overrides, config)
    return out


def _rounds_after(n: int, eta: int) -> list[int]:
    """Candidates per round from ``n`` on: n, ⌈n/η⌉, ⌈n/η²⌉, … down to 1 (⌈log_η n⌉ + 1 rounds)."""
    counts = [n]
    while counts[-1] > 1:
        counts.append(-(-counts[-1] // eta))
    return counts


def _cumulative_budget(remaining: float, trained: list[float], counts: list[int], eta: int) -> float:
    """The budget b of this round such that this round and the later ones spend ``remaining`` seconds.

    The plan: cumulative budgets b, ηb, η²b, … for ``counts`` candidates per round. The survivors, already
    trained ``trained`` seconds, each cost max(0, b − t); a later round k costs counts[k]·(η^k − η^(k−1))·b. The
    cost is continuous and increasing in b, linear between the sorted t: solved piece by piece, and rounded
    down to the millisecond (for a readable ``max_seconds`` in ``best.toml``).
    """
    if remaining <= 0:
        return 0.0
    later = sum(m * (eta ** k - eta ** (k - 1)) for k, m in enumerate(counts) if k >= 1)
    ts = sorted(trained) + [math.inf]
    for j in range(1, len(ts)):
        b = (remaining + sum(ts[:j])) / (j + later)
        if ts[j - 1] <= b <= ts[j]:
            return math.floor(b * 1000) / 1000
    raise AssertionError("unreachable: the cost is continuous and increasing")


def _scores(trials: list[Trial], metric: str) -> None:
    """Set each trial's score: for each error of ``metric``, the error over the best of the round, summed;
    ``inf`` for a diverged run or a missing error."""
    keys = METRICS[metric]

    def value(t, k):
        v = getattr(t, k)
        return v if t.status != "diverged" and v is not None and math.isfinite(v) else None

    best = {k: min((v for t in trials if (v := value(t, k)) is not None), default=None) for k in keys}
    for t in trials:
        values = [value(t, k) for k in keys]
        if any(v is None for v in values):
            t.score = math.inf
            continue
        # an exact fit (best 0) puts its equals at 0 and everyone else last
        t.score = sum(v / best[k] if best[k] > 0 else (0.0 if v == 0 else math.inf) for k, v in zip(keys, values))


def _in_memory(config: TrainingConfig, data: TrainingData) -> TrainingConfig:
    """``config`` on the data read once: no candidate reads the files again, and every one sees the same split."""
    species = {} if config.init_potential else {"species": data.species}   # a start potential names its own
    return dataclasses.replace(config, train=data.train, validation=data.validation, min_dist=data.min_dist,
                               max_dist=data.max_dist, **species)


def _winner_config(config: TrainingConfig, budget: float) -> TrainingConfig:
    """The configuration ``best.toml`` holds, as :meth:`TrainingConfig.from_toml` reads it back."""
    files = {}
    if not isinstance(config.train, Dataset) and config.train is not None:
        files["train"] = [str(Path(p).resolve()) for p in config.train]
    if config.validation is not None and not isinstance(config.validation, Dataset):
        files["validation"] = [str(Path(p).resolve()) for p in config.validation]
    if config.init_potential:
        files["init_potential"] = str(Path(config.init_potential).resolve())
    output = TrainingConfig.__dataclass_fields__["output"].default
    return dataclasses.replace(config, max_seconds=budget, output=output, resume=False, overwrite=False, **files)


def _check_labels(validation: Dataset, metric: str) -> None:
    """Refuse a metric whose error the validation set has no labels for (every candidate would rank last)."""
    needs = {"epa_rmse": ("energies", lambda c: c.energy is not None),
             "force_rmse": ("forces", lambda c: c.forces is not None)}
    for key in METRICS[metric]:
        what, has = needs[key]
        if not any(has(c) for c in validation):
            other = "force" if key == "epa_rmse" else "epa"
            raise ValueError(f"metric {metric!r} ranks by the validation {what}, but no configuration of "
                             f"{validation.name!r} has {what}: rank with metric {other!r} or label the set")


def tune(base: TrainingConfig, candidates: list | None = None, *, budget: float, eta: int = 3,
         metric: str = "both", output: str | Path = "tune", overwrite: bool = False, resume: bool = False,
         log: Callable[[str], None] | None = print) -> TuneResult:
    """Choose among trainers (and learning rates) on ``base``'s data by successive halving under a total budget.

    Successive halving (Jamieson & Talwalkar, AISTATS 2016), in the geometric form of Hyperband's inner loop (Li
    et al., JMLR 18 (2018) 185): n₀ candidates, R = ⌈log_η n₀⌉ + 1 rounds; round r trains each of its n_r
    candidates up to a cumulative wall time b_r = b₀·η^r and keeps the best ⌈n_r/η⌉ by the validation errors,
    so the last round trains the single survivor, which wins, with the largest budget. A survivor continues its
    run from the checkpoint (the same run folder, ``resume``, ``max_seconds = b_r``): its trajectory is the one an
    uninterrupted run of b_r seconds would have taken, so no round repeats work.

    The budget counts training seconds as they were really used, on the trainers' clock (the one
    ``max_seconds`` bounds; a diverged run counts its whole :func:`mtpfit.fit` call). A run stops after the first
    iteration that ends past its budget, so runs overshoot; therefore b is planned again before every round from
    what is left: b_r solves Σ_survivors max(0, b_r − t_i) + b_r·Σ_{k≥1} n_{r+k}(η^k − η^(k−1)) = budget − spent,
    with t_i a survivor's training time so far (at round 0, b₀ = budget / (n₀ + Σ_{r≥1} n_r(η^r − η^(r−1)))).
    Time a run leaves unused (it converged, or reached ``max_iter`` or ``epochs``) goes to the later rounds, and
    only the last round's overshoot — one iteration of the winner — can take the total past the budget. A
    survivor whose time already reaches b_r is not run that round ("no time left"; it keeps its errors). Reading
    the data, building each run's representation and starting point and writing its files are not counted
    (:attr:`TuneResult.elapsed` holds the whole wall time); the data are read once and given to every run in
    memory, and only the last round's run writes predictions and plots.

    Ranking: with ``metric`` "epa" or "force", the validation EPA RMSE or force RMSE over the best among the
    round's candidates; with "both", the sum of the two ratios, so each error counts by how far it is from the
    best reached that round, whatever its units and scale (1 + 1 = 2 for a candidate best at both). A diverged
    run (FloatingPointError or a singular linear system in :func:`mtpfit.fit`) or a missing or non-finite error
    ranks last and never goes on; ties keep the candidates' order.

    Parameters
    ----------
    base : TrainingConfig
        The data, model, loss and every other setting; ``threads`` for each run (runs are sequential). Its
        ``optimizer``, ``lr`` (for candidates that set it), ``max_seconds``, ``output``, ``resume`` and
        ``overwrite`` are replaced per candidate. ``max_iter`` and ``epochs`` still bound each run: set them high
        for the budget alone to decide (``mtpfit tune`` does).
    candidates : list of dict or str, optional
        TrainingConfig overrides per candidate, with at least ``optimizer``, e.g. ``{"optimizer": "adam", "lr":
        3e-3}``, or strings ``NAME[:LR]`` (:func:`parse_candidate`). Default: :func:`default_candidates`.
    budget : float
        Total training seconds, > 0.
    eta : int
        The halving rate η ≥ 2: each round keeps 1/η of the candidates and gives them η times the time.
    metric : {"both", "epa", "force"}
        The validation errors that rank.
    output : path
        Folder of ``tune.json``, ``best.toml`` and ``runs/NN-LABEL`` (one run folder per candidate).
    overwrite : bool
        Replace an earlier tuning in ``output`` (its ``runs`` folder is deleted).
    resume : bool
        Continue the interrupted tuning in ``output`` (same candidates, budget, η and metric): its finished rounds
        are read from ``tune.json``, and the round it was in is run again, each candidate continuing from its run's
        checkpoint (the training seconds it had used count, so the budget is not spent twice).
    log : callable, optional
        Receives a line per round and per run (the runs' own lines are not passed on).

    Returns
    -------
    TuneResult

    Raises
    ------
    ValueError
        Before anything is trained: a budget that is not a positive number of seconds, η not an integer ≥ 2, an
        unknown metric, a candidate that is not valid (an unknown optimizer, with the closest names; a setting
        TrainingConfig refuses; one that sets the data or the budgets; given twice), an empty candidate list, a
        validation set without the labels the metric needs, an earlier tuning in ``output`` without
        ``overwrite`` or ``resume``, or with ``resume`` a ``tune.json`` that is missing, finished, or of other
        candidates, budget, η or metric. From :func:`mtpfit.fit`: data the potential cannot use.
    RuntimeError
        When every candidate diverged (``tune.json`` records them).
    KeyboardInterrupt
        On Ctrl-C, after ``tune.json`` is written with the rounds so far (``resume`` continues the tuning).
    """
    began = time.perf_counter()
    say = log or (lambda line: None)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a positive number of seconds, got {budget!r}")
    if isinstance(eta, bool) or not isinstance(eta, (int, np.integer)) or eta < 2:
        raise ValueError(f"eta must be an integer of at least 2 (each round keeps 1/eta of the candidates), "
                         f"got {eta!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if isinstance(candidates, (str, dict)):
        candidates = [candidates]
    if candidates is not None and not list(candidates):
        raise ValueError("no candidates given")
    eta = int(eta)
    configs = _candidate_configs(base, list(candidates) if candidates is not None else default_candidates(base.model))
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is a file, not a folder")
    if resume and overwrite:
        raise ValueError("resume (--resume) and overwrite (--overwrite) contradict each other")
    earlier = [p.name for p in (output / "tune.json", output / "best.toml", output / "runs") if p.exists()]
    if earlier and not (overwrite or resume):
        raise ValueError(f"{output} holds an earlier tuning ({', '.join(earlier)}): pass resume (--resume) to "
                         "continue it, overwrite (--overwrite) to replace it, or choose another output")
    folders = {label: output / "runs" / f"{i:02d}-{re.sub(r'[^A-Za-z0-9.+-]+', '_', label)}"
               for i, label in enumerate(configs)}
    record = {"budget_s": budget, "eta": eta, "metric": metric,
              "candidates": [{"label": k, "overrides": o, "folder": str(folders[k])} for k, (o, _) in configs.items()],
              "rounds": []}
    # JSON's view of the record (tuples become lists): what a resumed tuning's tune.json must hold
    done = _finished_rounds(output, json.loads(json.dumps(_clean(record), default=str))) if resume else []
    data = load_training_data(dataclasses.replace(base, output=None, resume=False, overwrite=False))
    _check_labels(data.validation, metric)
    if overwrite:
        shutil.rmtree(output / "runs", ignore_errors=True)

    def write_record(**extra):
        output.mkdir(parents=True, exist_ok=True)
        # JSON has no infinity: a candidate ranked last scores null
        values = _clean({**record, "rounds": [[dataclasses.asdict(t) for t in r] for r in rounds], **extra})
        write_text_atomically(output / "tune.json", json.dumps(values, indent=1, ensure_ascii=False, default=str))

    survivors, rounds = list(configs), []
    trained: dict[str, float] = {}
    last: dict[str, Trial] = {}
    spent = 0.0
    for trials in done:    # a resumed tuning: its finished rounds as they were
        rounds.append(trials)
        spent += sum(t.seconds for t in trials)
        for t in trials:
            if t.status == "trained":
                trained[t.candidate], last[t.candidate] = t.wall_time, t
        survivors = [t.candidate for t in trials if t.kept]
    say(f"tuning {len(configs)} candidates over {len(_rounds_after(len(configs), eta))} rounds (eta {eta}), "
        f"{budget:g} s of training, ranked by validation {metric}; runs in {output / 'runs'}"
        + (f"; resumed after round {len(done)}, {spent:.1f} s spent" if resume else ""))
    write_record(seconds=spent)   # from now on a killed tuning leaves a tune.json to resume from
    try:
        while not rounds or (len(rounds[-1]) > 1 and survivors):
            r, counts = len(rounds), _rounds_after(len(survivors), eta)
            b = _cumulative_budget(budget - spent, [trained.get(s, 0.0) for s in survivors], counts, eta)
            say(f"\nround {r + 1}/{r + len(counts)}: "
                + (f"{len(survivors)} candidates, budget {b:.2f} s each" if len(survivors) > 1
                   else f"the last candidate, budget {b:.2f} s")
                + f" (cumulative), {budget - spent:.1f} s of training left")
            trials = []
            for label in survivors:
                t = _run(label, configs[label][1], data, folders[label], b, trained, last, r, overwrite or resume,
                         inspection=len(survivors) == 1)
                spent += t.seconds
                trials.append(t)
                say(_line(t))
            _scores(trials, metric)
            trials.sort(key=lambda t: t.score)     # stable: ties keep the candidates' order
            keep = -(-len(trials) // eta) if len(trials) > 1 else 1
            for i, t in enumerate(trials):
                t.rank, t.kept = i + 1, i < keep and math.isfinite(t.score)
            rounds.append(trials)
            write_record(seconds=spent)
            survivors = [t.candidate for t in trials if t.kept]
    except KeyboardInterrupt:
        write_record(seconds=spent, interrupted=True)
        raise
    finished = [t for trials in reversed(rounds) for t in trials if t.kept]
    if not finished:
        write_record(seconds=spent, winner=None)
        raise RuntimeError(f"every candidate diverged or has no validation error; see {output / 'tune.json'}")
    best = finished[0]
    config = _winner_config(configs[best.candidate][1], best.budget)
    toml = output / "best.toml"
    try:
        write_text_atomically(toml, config.to_toml())
    except ValueError as err:   # data given in memory
        say(f"no best.toml: {err}")
        toml = None
    result = TuneResult(rounds=rounds, winner=best.candidate, config=config, run=folders[best.candidate],
                        seconds=spent, elapsed=time.perf_counter() - began, budget=budget, json=output / "tune.json",
                        toml=toml, candidates={k: o for k, (o, _) in configs.items()})
    write_record(seconds=spent, elapsed_s=result.elapsed, winner=best.candidate, config=config.to_dict(),
                 best_toml=None if toml is None else str(toml))
    return result


def _finished_rounds(output: Path, record: dict) -> list[list[Trial]]:
    """The finished rounds of the interrupted tuning in ``output``, checked against this tuning's ``record``.

    Raises
    ------
    ValueError
        For a missing or unreadable ``tune.json``, a finished tuning, or other candidates, budget, η or metric.
    """
    path = output / "tune.json"
    try:
        saved = json.loads(path.read_text())
        rounds = [[Trial(**{**t, "score": math.inf if t["score"] is None else t["score"]}) for t in r]
                  for r in saved["rounds"]]
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: cannot read the tuning to resume ({type(err).__name__}: {err})") from None
    if "winner" in saved:
        raise ValueError(f"{path}: the tuning is finished (winner {saved['winner']}); nothing to resume")
    differs = [k for k in ("budget_s", "eta", "metric", "candidates") if saved.get(k) != record[k]]
    if differs:
        raise ValueError(f"{path}: the tuning to resume had other {', '.join(differs)} "
                         f"({'; '.join(f'{k} {saved.get(k)!r:.200}' for k in differs)})")
    return rounds


def _run(label: str, config: TrainingConfig, data: TrainingData, folder: Path, budget: float,
         trained: dict, last: dict, round_: int, replace: bool, inspection: bool) -> Trial:
    """Train (or continue) one candidate up to ``budget`` seconds; updates ``trained`` and ``last``.

    A candidate first trained this round starts afresh, replacing what its folder holds when ``replace``, except
    that a checkpoint there (a resumed tuning interrupted in this round) is continued, its seconds counted."""
    before = trained.get(label)
    if before is not None and budget <= before:
        previous = last[label]
        return dataclasses.replace(previous, round=round_, budget=budget, seconds=0.0, status="no time left",
                                   score=math.inf, rank=0, kept=False)
    resume = before is not None or (replace and any((folder / name).exists()
                                                    for name in ("checkpoint.npz", "stage1.npz")))
    settings = dataclasses.replace(_in_memory(config, data), output=str(folder), max_seconds=budget,
                                   resume=resume, overwrite=not resume and replace)
    start = time.perf_counter()
    try:
        run = fit(settings, log=None, inspection=inspection)
    except (FloatingPointError, np.linalg.LinAlgError) as err:
        return Trial(label, round_, budget, time.perf_counter() - start, None, None, None, None, "diverged",
                     str(err))
    if run.interrupted:
        raise KeyboardInterrupt
    errors = run.errors["validation"]["all"]
    trial = Trial(label, round_, budget, max(0.0, run.wall_time - (before or 0.0)), run.wall_time,
                  int(run.result.nit), errors["epa_rmse"], errors["force_rmse"], "trained", str(run.result.message))
    trained[label], last[label] = run.wall_time, trial
    return trial


def _line(t: Trial) -> str:
    if t.status == "diverged":
        return f"  {t.candidate:<26} diverged after {t.seconds:.1f} s: {t.message}"
    return (f"  {t.candidate:<26} {t.wall_time:8.2f} s  {t.iterations:6d} it  validation EPA RMSE "
            f"{shown(t.epa_rmse, '.3f', 'meV/atom', 1e3)}  force RMSE {shown(t.force_rmse, '.4f', 'eV/Å')}"
            + ("  (no time left: not run)" if t.status == "no time left" else ""))


def format_ranking(result: TuneResult) -> str:
    """The rounds as a table, best first: rank, candidate, budget (s), training time (s), validation EPA RMSE
    (meV/atom) and force RMSE (eV/Å), and whether the candidate went on."""
    lines = []
    for r, trials in enumerate(result.rounds):
        lines.append(f"\nround {r + 1} of {len(result.rounds)}")
        lines.append(f"{'rank':>4}  {'candidate':<26} {'budget s':>9} {'trained s':>9} {'EPA meV/atom':>12} "
                     f"{'force eV/Å':>10}  ")
        for t in trials:
            epa = "—" if t.epa_rmse is None else f"{t.epa_rmse * 1e3:.3f}"
            force = "—" if t.force_rmse is None else f"{t.force_rmse:.4f}"
            wall = "—" if t.wall_time is None else f"{t.wall_time:.2f}"
            note = ("winner" if t.kept and r == len(result.rounds) - 1 and t.candidate == result.winner
                    else "kept" if t.kept else t.status if t.status != "trained" else "")
            lines.append(f"{t.rank:>4}  {t.candidate:<26} {t.budget:>9.2f} {wall:>9} {epa:>12} {force:>10}  {note}")
    lines.append(f"\n{result.seconds:.1f} s of training of a {result.budget:g} s budget "
                 f"({result.elapsed:.1f} s in all); winner {result.winner}")
    return "\n".join(lines)
