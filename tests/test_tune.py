"""mtpfit tune: successive halving over trainers under a total budget of training seconds."""
import dataclasses
import json
import math

import pytest

import mtpfit.train.tune as tune_module
from conftest import DATA
from mtpfit.cli import main
from mtpfit.train import TrainingConfig
from mtpfit.train.tune import _cumulative_budget, format_ranking, tune

TRAIN = DATA / "mlip2" / "level08_multi" / "train100.cfg"
#: sgd without its clipping at a learning rate of 1e3 overflows within a few steps: a FloatingPointError from fit
DIVERGING = {"optimizer": "sgd", "lr": 1e3, "hyper": {"clip": None}}
CANDIDATES = ["varpro", "BFGS", "adam:3e-3", DIVERGING]
BUDGET = 4.0
#: A run stops after the first iteration past its budget: only the last round's overshoot (one iteration or
#: mini-batch step, with its validation pass, of a level-6 MTP on 90 configurations: ~0.05 s) is not planned for.
SLACK = 0.5


def _base(**settings):
    return TrainingConfig(train=[str(TRAIN)], level=6, threads=1, log_every=0, max_iter=10 ** 6, epochs=10 ** 6,
                          **settings)


def _recording_fit(calls: list, then=None):
    """tune's fit, recording (config, run) in ``calls`` (run None when it diverged), then calling ``then(calls)``."""
    real_fit = tune_module.fit

    def recording_fit(config, **kw):
        try:
            run = real_fit(config, **kw)
        except FloatingPointError:
            calls.append((config, None))
            raise
        calls.append((config, run))
        if then is not None:
            then(calls)
        return run

    return recording_fit


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One tuning of four candidates (one diverging), with every fit call and its run recorded."""
    calls = []
    output = tmp_path_factory.mktemp("tune")
    lines = []
    patch = pytest.MonkeyPatch()
    patch.setattr(tune_module, "fit", _recording_fit(calls))
    try:
        result = tune(_base(), CANDIDATES, budget=BUDGET, output=output, log=lines.append)
    finally:
        patch.undo()
    return result, calls, lines, output


def _score(trial, trials):
    """The "both" score recomputed from the recorded errors."""
    ok = [t for t in trials if t.status != "diverged"]
    if trial.status == "diverged":
        return math.inf
    return sum(getattr(trial, k) / min(getattr(t, k) for t in ok) for k in ("epa_rmse", "force_rmse"))


def test_halving_keeps_a_third_each_round_ranked_by_the_validation_errors(tuned):
    result, _, _, output = tuned
    assert [len(r) for r in result.rounds] == [4, 2, 1]         # ⌈4/3⌉ = 2, then 1: ⌈log₃ 4⌉ + 1 rounds
    for r, trials in enumerate(result.rounds):
        scores = [_score(t, trials) for t in trials]
        assert scores == sorted(scores)
        assert [t.score for t in trials] == pytest.approx(scores)
        kept = [t.candidate for t in trials if t.kept]
        assert kept == [t.candidate for t in trials[:-(-len(trials) // 3)]]
        if r + 1 < len(result.rounds):
            assert {t.candidate for t in result.rounds[r + 1]} == set(kept)
    assert result.winner == result.rounds[-1][0].candidate
    record = json.loads((output / "tune.json").read_text())
    assert record["winner"] == result.winner
    assert [[t["candidate"] for t in r] for r in record["rounds"]] == \
        [[t.candidate for t in r] for r in result.rounds]
    assert record["rounds"][0][-1]["score"] is None              # inf: JSON null
    assert "round 1 of 3" in format_ranking(result) and "winner" in format_ranking(result)


def test_survivors_continue_their_runs_from_the_checkpoint(tuned):
    result, calls, _, output = tuned
    assert len(list((output / "runs").iterdir())) == len(CANDIDATES)
    by_folder = {}
    for config, run in calls:
        by_folder.setdefault(config.output, []).append((config, run))
    assert len(calls) == 4 + 2 + 1
    for r in range(1, len(result.rounds)):
        for trial in result.rounds[r]:
            earlier = next(t for t in result.rounds[r - 1] if t.candidate == trial.candidate)
            assert trial.wall_time > earlier.wall_time >= earlier.budget
            assert trial.iterations > earlier.iterations
    for folder, runs in by_folder.items():
        assert [c.resume for c, _ in runs] == [False] + [True] * (len(runs) - 1)
        assert [c.max_seconds for c, _ in runs] == sorted(c.max_seconds for c, _ in runs)
        for (_, before), (_, after) in zip(runs, runs[1:]):
            # the earlier run's history, timings and all, comes back from its checkpoint: not a fresh start
            assert after.history[:len(before.history)] == before.history
            assert len(after.history) > len(before.history)


def test_the_training_seconds_stay_within_the_budget(tuned):
    result, calls, _, _ = tuned
    trials = [t for r in result.rounds for t in r]
    assert result.seconds == pytest.approx(sum(t.seconds for t in trials))
    # what the trainers really ran: each candidate's last wall time, plus the diverged calls
    last = {}
    for t in trials:
        if t.status == "trained":
            last[t.candidate] = t.wall_time
    diverged = sum(t.seconds for t in trials if t.status == "diverged")
    assert sum(last.values()) + diverged == pytest.approx(result.seconds)
    assert 0.8 * BUDGET < result.seconds <= BUDGET + SLACK
    budgets = [r[0].budget for r in result.rounds]
    assert budgets == sorted(budgets) and budgets[-1] > 3 * budgets[0]   # η = 3, less the overshoots


def test_best_toml_is_the_winners_configuration_and_trains(tuned, tmp_path, capsys):
    result, _, _, _ = tuned
    loaded = TrainingConfig.from_toml(result.toml)
    assert loaded == result.config
    winner = next(t for t in result.rounds[-1] if t.candidate == result.winner)
    assert loaded.max_seconds == winner.budget
    assert loaded.optimizer == result.candidates[result.winner]["optimizer"]
    assert (loaded.level, loaded.threads, loaded.train) == (6, 1, [str(TRAIN.resolve())])
    assert (result.run / "trained.mtp").exists() and (result.run / "parity.png").exists()
    assert main(["train", "--config", str(result.toml), "--max-seconds", "0.2", "--output", str(tmp_path / "run"),
                 "--quiet"]) == 0
    assert (tmp_path / "run" / "trained.mtp").exists()


def test_a_diverging_candidate_ranks_last_and_the_tuning_goes_on(tuned):
    result, _, lines, _ = tuned
    first = result.rounds[0]
    assert first[-1].candidate.startswith("sgd:1000") and first[-1].status == "diverged"
    assert first[-1].score == math.inf and not first[-1].kept and first[-1].seconds > 0
    assert all(t.status == "trained" for r in result.rounds[1:] for t in r)
    assert any("diverged" in line for line in lines)


def test_the_budget_plan_spends_what_is_left():
    # round 0 of 4 candidates at η = 3: b₀(4 + 2·(3 − 1) + 1·(9 − 3)) = 14 s
    assert _cumulative_budget(14.0, [0.0] * 4, [4, 2, 1], 3) == pytest.approx(1.0)
    # a survivor already past the round's budget is not run: (b − 1) + 1·(3 − 1)·b = 5 s
    assert _cumulative_budget(5.0, [5.0, 1.0], [2, 1], 3) == pytest.approx(2.0)
    assert _cumulative_budget(-1.0, [1.0], [1], 3) == 0.0


@pytest.mark.parametrize("settings, message", [
    ({"budget": 0}, "budget must be a positive number"), ({"budget": -3.0}, "budget must be a positive number"),
    ({"budget": math.inf}, "budget must be a positive number"), ({"budget": "60"}, "budget must be a positive"),
    ({"budget": 5, "eta": 1}, "eta must be an integer of at least 2"),
    ({"budget": 5, "eta": 2.5}, "eta must be an integer"),
    ({"budget": 5, "metric": "loss"}, "metric must be one of"),
    ({"budget": 5, "candidates": ["adamm:1e-3"]}, "candidate 'adamm:1e-3'.*did you mean 'adam"),
    ({"budget": 5, "candidates": ["adam:fast"]}, "learning rate 'fast' is not a number"),
    ({"budget": 5, "candidates": ["adam:0"]}, "learning rate must be a positive"),
    ({"budget": 5, "candidates": ["adam:1e-3", "Adam:0.001"]}, "given twice"),
    ({"budget": 5, "candidates": [{"optimizer": "adam", "max_seconds": 3}]}, "are the tuning's"),
    ({"budget": 5, "candidates": [{"optimizer": "adam", "rate": 3}]}, "unknown setting"),
    ({"budget": 5, "candidates": []}, "no candidates"),
])
def test_bad_input_is_refused_before_training(settings, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        tune(_base(), **{"candidates": ["varpro"], **settings, "output": tmp_path / "t"})
    assert not (tmp_path / "t").exists()


def test_an_earlier_tuning_is_not_overwritten_silently(tuned):
    _, _, _, output = tuned
    with pytest.raises(ValueError, match="holds an earlier tuning"):
        tune(_base(), ["varpro"], budget=1, output=output)


def test_an_interrupted_tuning_resumes_where_it_stopped(tmp_path, monkeypatch):
    """Ctrl-C in round 2, after its first run: --resume keeps round 1 as recorded, continues that run from its
    checkpoint (its seconds counted once) and finishes the tuning within the budget."""
    calls = []

    def interrupt(calls):
        if len(calls) == 5:      # round 1 took 4 runs: the first of round 2 has just finished, unrecorded
            raise KeyboardInterrupt

    monkeypatch.setattr(tune_module, "fit", _recording_fit(calls, interrupt))
    output = tmp_path / "t"
    with pytest.raises(KeyboardInterrupt):
        tune(_base(), CANDIDATES, budget=BUDGET, output=output, log=None)
    saved = json.loads((output / "tune.json").read_text())
    assert saved["interrupted"] and len(saved["rounds"]) == 1
    with pytest.raises(ValueError, match="other budget_s"):
        tune(_base(), CANDIDATES, budget=2 * BUDGET, output=output, resume=True, log=None)
    with pytest.raises(ValueError, match="contradict"):
        tune(_base(), CANDIDATES, budget=BUDGET, output=output, resume=True, overwrite=True, log=None)
    stopped_config, stopped = calls[4]
    calls.clear()
    result = tune(_base(), CANDIDATES, budget=BUDGET, output=output, resume=True, log=None)
    assert [len(r) for r in result.rounds] == [4, 2, 1]
    assert [dataclasses.asdict(t) for t in result.rounds[0]] == \
        [{**t, "score": math.inf if t["score"] is None else t["score"]} for t in saved["rounds"][0]]
    assert len(calls) == 2 + 1                               # round 1 is not run again
    again = next((c, run) for c, run in calls if c.output == stopped_config.output)
    assert again[0].resume and again[1].history[:len(stopped.history)] == stopped.history
    label = next(c["label"] for c in saved["candidates"] if c["folder"] == again[0].output)
    trial = next(t for t in result.rounds[1] if t.candidate == label)
    assert trial.wall_time == again[1].wall_time
    # its seconds: from the end of round 1, the part trained before the interruption included, counted once
    round_1 = next(t for t in result.rounds[0] if t.candidate == label)
    assert trial.seconds == pytest.approx(again[1].wall_time - round_1.wall_time)
    assert result.seconds == pytest.approx(sum(t.seconds for r in result.rounds for t in r))
    assert 0.8 * BUDGET < result.seconds <= BUDGET + SLACK
    with pytest.raises(ValueError, match="finished"):
        tune(_base(), CANDIDATES, budget=BUDGET, output=output, resume=True, log=None)


def test_a_tuning_killed_in_its_first_round_resumes(tmp_path, monkeypatch):
    """tune.json is written before the first run, so a tuning killed (not interrupted) in round 1 resumes: the
    runs that finished continue from their checkpoints, the others start again."""
    real_fit = tune_module.fit
    calls, killed = [], []

    def killed_fit(config, **kw):
        calls.append(config)
        if len(calls) == 3 and not killed:
            killed.append(True)
            raise SystemExit("killed")     # no Ctrl-C handling: as if the process had died here
        return real_fit(config, **kw)

    monkeypatch.setattr(tune_module, "fit", killed_fit)
    output = tmp_path / "t"
    with pytest.raises(SystemExit):
        tune(_base(), CANDIDATES, budget=BUDGET, output=output, log=None)
    assert json.loads((output / "tune.json").read_text())["rounds"] == []
    calls.clear()
    result = tune(_base(), CANDIDATES, budget=BUDGET, output=output, resume=True, log=None)
    assert [c.resume for c in calls[:4]] == [True, True, False, False]
    assert [len(r) for r in result.rounds] == [4, 2, 1] and result.winner


def test_the_command_line_prints_the_ranking_and_the_train_command(tmp_path, capsys):
    out = tmp_path / "tune"
    args = ["tune", "--train", str(TRAIN), "--level", "6", "--threads", "1", "--log-every", "0", "--budget", "1.5",
            "--candidates", "varpro", "adam:3e-3", "--output", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "round 1 of 2" in printed and "EPA meV/atom" in printed and "winner" in printed
    assert f"mtpfit train --config {out / 'best.toml'}" in printed
    config = TrainingConfig.from_toml(out / "best.toml")
    assert config.optimizer in ("varpro", "adam") and config.max_iter == 10 ** 6
    assert main(args) == 2 and "holds an earlier tuning" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 2 and "the tuning is finished" in capsys.readouterr().err
    assert main(args[:-2] + ["--output", str(tmp_path / "u"), "--eta", "1"]) == 2
    assert "eta must be" in capsys.readouterr().err
    assert main(["tune", "--budget", "5", "--candidates", "nope", "--output", str(tmp_path / "v")]) == 2
    assert "unknown optimizer 'nope'" in capsys.readouterr().err
