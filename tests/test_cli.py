"""The command line: a short training run writes its files; bad input gives a clear message and exit code 2."""
import csv
import json
import re

import numpy as np
import pytest

from conftest import DATA
from mtpfit import MTP
from mtpfit.cli import main
from mtpfit.train import TrainingConfig

LEVEL08 = DATA / "mlip2" / "level08_multi"


def test_train_writes_potential_metrics_and_history(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["train", "--optimizer", "BFGS", "--train", str(LEVEL08 / "train100.cfg"),
                   "--validation", str(LEVEL08 / "ref10.cfg"), "--level", "8", "--max-dist", "5", "--max-iter", "12",
                   "--log-every", "5",
                   "--output", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "Validation errors" in printed and "iter    12" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["optimizer"]["nit"] == 12
    assert metrics["errors"]["validation"]["all"]["n_configurations"] == 10
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert len(rows) == 12
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < losses[0]
    assert rows[4]["train_force_rmse"] != "" and rows[3]["train_force_rmse"] == ""
    trained = MTP.read(out / "trained.mtp")
    assert trained.n_params == 156 and metrics["optimizer"]["final_loss"] == pytest.approx(losses[-1])
    assert np.array_equal(MTP.read(out / "checkpoint.mtp").theta, trained.theta)


def test_evaluate_prints_errors(capsys):
    assert main(["evaluate", str(LEVEL08 / "pot.mtp"), str(LEVEL08 / "ref10.cfg"), "--json"]) == 0
    errors = json.loads(capsys.readouterr().out)
    assert errors["all"]["n_configurations"] == 10 and errors["all"]["epa_rmse"] < 1e-3


def test_bad_input_exits_2_naming_the_problem(tmp_path, capsys):
    broken = tmp_path / "broken.cfg"
    broken.write_text((LEVEL08 / "ref10.cfg").read_text().replace("    27\n", "    28\n", 1))
    assert main(["evaluate", str(LEVEL08 / "pot.mtp"), str(broken)]) == 2
    assert "broken.cfg" in capsys.readouterr().err
    assert main(["evaluate", str(LEVEL08 / "pot.mtp"), str(LEVEL08 / "ref10.cfg"), "--species", "Au", "Ag"]) == 2
    assert "species" in capsys.readouterr().err
    assert main(["train", "--train", str(tmp_path / "missing.cfg")]) == 2
    assert "missing.cfg" in capsys.readouterr().err


def test_minibatch_optimizer_config_file_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    config = tmp_path / "run.toml"
    config.write_text('optimizer = "adamw"\nlr = 0.003\nbatch_size = 16\nepochs = 2\nlevel = 8\nmax_dist = 5.0\n'
                      'schedule = "cosine"\n[schedule_options]\nt_max = 20\n')
    argv = ["train", "--config", str(config), "--train", str(LEVEL08 / "train100.cfg"), "--output", str(out),
            "--quiet"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["optimizer"] == "adamw" and metrics["settings"]["batch_size"] == 16
    assert metrics["optimizer"]["nit"] == 2 * 6  # 90 training configurations in batches of 16
    # an existing checkpoint is never overwritten silently
    capsys.readouterr()
    assert main(argv) == 2 and "--resume" in capsys.readouterr().err
    # resuming with more epochs continues from step 12
    assert main(argv + ["--resume", "--epochs", "3"]) == 0
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 19))
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = 0.1\n")
    assert main(["train", "--config", str(bad)]) == 2 and "learning_rate" in capsys.readouterr().err
    assert main(["train", "--optimizer", "adamx"]) == 2 and "adamx" in capsys.readouterr().err


@pytest.mark.parametrize("optimizer, hyper, message", [
    ("adam", {"betas": 0.9}, "'adam'.*betas"),
    ("varpro", {"lr": 0.1}, "'varpro' has no option 'lr'"),
    ("adam+L-BFGS-B", {"gtol": 1e-6}, "'adam'.*gtol"),            # a hybrid's hyper goes to its mini-batch stage
    ("varpro+LM", {"c1": 0.2}, "'LM' has no option 'c1'"),        # ... else to its last stage
    ("als", {"stop_window": 5}, "'als' has no option 'stop_window'"),
])
def test_hyperparameters_the_trainer_does_not_take_fail_before_any_data_is_read(tmp_path, capsys, optimizer,
                                                                                 hyper, message):
    model = {"model": "etn"} if optimizer == "als" else {}
    with pytest.raises(ValueError, match=message):
        TrainingConfig(train=[str(tmp_path / "never_read.cfg")], optimizer=optimizer, hyper=hyper, **model)
    bad = tmp_path / "bad.toml"
    bad.write_text(f'optimizer = "{optimizer}"\n' + "".join(f'{k} = "{v}"\n' for k, v in model.items())
                   + "[hyper]\n" + "".join(f"{k} = {v}\n" for k, v in hyper.items()))
    assert main(["train", "--config", str(bad), "--train", str(tmp_path / "never_read.cfg")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "never_read" not in err   # refused before the (missing) file is opened


def test_the_options_the_trainers_take_pass_the_check():
    for optimizer, hyper in [("adam", {"b1": 0.8, "eps": 1e-7}), ("varpro", {"c1": 0.2, "ridge": 1e-9}),
                             ("LM", {"geodesic": True, "tau": 1e-2}), ("BFGS", {"gtol": 1e-6}),
                             ("native-bfgs", {"linear_every": 10}), ("adam+LM", {"b1": 0.8})]:
        assert TrainingConfig(optimizer=optimizer, hyper=hyper).hyper == hyper


def test_hybrid_adam_then_lbfgs(tmp_path):
    out = tmp_path / "hybrid"
    assert main(["train", "--optimizer", "adam+L-BFGS-B", "--epochs", "2", "--batch-size", "16", "--max-iter", "5",
                 "--train", str(LEVEL08 / "train100.cfg"), "--level", "6", "--output", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["optimizer"]["message"].startswith("adam: 2 epochs done; L-BFGS-B:")
    stages = [r["stage"] for r in csv.DictReader(open(out / "history.csv"))]
    assert stages.count("1") == 2 * 6 and stages.count("2") == 5


def test_native_bfgs_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "native"
    assert main(["train", "--optimizer", "native-bfgs", "--max-iter", "5", "--train", str(LEVEL08 / "ref10.cfg"),
                 "--level", "6", "--output", str(out), "--log-every", "40"]) == 0
    printed = capsys.readouterr().out
    assert "iter    80  main" in printed and "iter    40  pretrain" in printed and "train EPA RMSE" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert "main: iteration limit 5 reached" in metrics["optimizer"]["message"]
    assert metrics["optimizer"]["nit"] == 75 + 5


def test_levenberg_marquardt_and_a_second_order_polish(tmp_path):
    out = tmp_path / "lm"
    assert main(["train", "--optimizer", "LM", "--max-iter", "12", "--train", str(LEVEL08 / "train100.cfg"),
                 "--level", "6", "--output", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "history.csv")))
    # from the re-solved start (loss 0.249; the species fit's is 1.14) the default damping descends slowly
    assert len(rows) == 12 and float(rows[-1]["loss"]) < float(rows[0]["loss"]) < 0.3
    # a smaller initial damping reaches a much lower loss in the same iterations from this start
    bold = tmp_path / "lm-bold"
    assert main(["train", "--optimizer", "LM", "--max-iter", "12", "--lm-tau", "1e-6", "--train",
                 str(LEVEL08 / "train100.cfg"), "--level", "6", "--output", str(bold), "--quiet"]) == 0
    bold_rows = list(csv.DictReader(open(bold / "history.csv")))
    assert float(bold_rows[-1]["loss"]) < 0.5 * float(rows[-1]["loss"])
    out = tmp_path / "bfgs-lm"
    assert main(["train", "--optimizer", "BFGS+LM", "--max-iter", "5", "--refine-iter", "3", "--train",
                 str(LEVEL08 / "train100.cfg"), "--level", "6", "--output", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["optimizer"]["message"].startswith("BFGS: ") and "; LM: " in metrics["optimizer"]["message"]
    stages = [r["stage"] for r in csv.DictReader(open(out / "history.csv"))]
    assert stages.count("1") == 5 and stages.count("2") == 3
    assert main(["train", "--optimizer", "adam+sgd"]) == 2


REF10 = ["--train", str(LEVEL08 / "ref10.cfg"), "--level", "6"]


def _metrics(folder):
    return json.loads((folder / "metrics.json").read_text())["optimizer"]


def test_wall_time_budget_stops_every_kind_of_trainer_and_says_so(tmp_path, capsys):
    """--max-seconds: a run stops after its first iteration past the budget, is not reported as converged, and the
    summary names its passes by kind (scipy: loss+gradient passes, never JᵀWJ builds)."""
    for optimizer in ("varpro", "native-bfgs", "BFGS", "GN", "adam", "BFGS+LM"):
        out = tmp_path / optimizer
        assert main(["train", "--optimizer", optimizer, "--max-iter", "50", "--epochs", "5", "--batch-size", "4",
                     "--max-seconds", "1e-9", *REF10, "--output", str(out), "--quiet"]) == 0
        printed, r = capsys.readouterr().out, _metrics(out)
        assert "wall-time budget 1e-09 s" in printed  # the budget line
        assert "wall-time budget of 1e-09 s" in r["message"] and not r["success"], optimizer
        assert r["nit"] == (2 if "+" in optimizer else 1), optimizer
        summary = printed.split("\n\n")[1].splitlines()[0]
        if optimizer in ("BFGS", "adam"):
            assert summary.startswith(f"{optimizer}: wall-time budget of 1e-09 s reached (1 iterations, ")
            assert "loss+gradient passes" in summary and "JᵀWJ" not in summary
        elif optimizer == "GN":
            assert " loss passes, " in summary and "JᵀWJ builds" in summary
        elif optimizer in ("varpro", "native-bfgs"):
            assert "wall-time budget of 1e-09 s reached after 1 iterations" in summary
            assert "loss+gradient passes" in summary and "linear solves" in summary
        else:
            # each stage's passes by kind; the second stage names the whole budget
            assert ("BFGS: wall-time budget of 1e-09 s reached; LM: wall-time budget of 1e-09 s (both stages) "
                    "reached") in summary
            assert re.search(r"BFGS: \d+ loss\+gradient passes; LM: \d+ loss passes, \d+ JᵀWJ builds", summary)


def test_wall_time_budget_from_a_config_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('optimizer = "L-BFGS-B"\nmax_iter = 50\nmax_seconds = 1e-9\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), *REF10, "--output", str(out), "--quiet"]) == 0
    r = _metrics(out)
    assert r["nit"] == 1 and r["message"] == "wall-time budget of 1e-09 s reached" and not r["success"]
    assert json.loads((out / "metrics.json").read_text())["settings"]["max_seconds"] == 1e-9


def test_native_bfgs_pretraining_is_set_and_stated(tmp_path, capsys):
    runs = {}
    for name, flags in (("two", ["--pretrain-iter", "2"]), ("zero", ["--pretrain-iter", "0"]),
                        ("skip", ["--skip-pretrain"])):
        out = tmp_path / name
        assert main(["train", "--optimizer", "native-bfgs", "--max-iter", "3", *flags, *REF10, "--output", str(out),
                     "--quiet"]) == 0
        runs[name] = capsys.readouterr().out, _metrics(out)
    printed, r = runs["two"]
    assert "native-bfgs, max 2 pre-training + 3 iterations" in printed and r["nit"] == 2 + 3
    assert "pretrain: iteration limit 2 reached" in r["message"]
    assert " loss+gradient passes, " in printed and " linear solves, " in printed
    for name in ("zero", "skip"):
        printed, r = runs[name]
        assert "native-bfgs, max 3 iterations, no pre-training" in printed and r["nit"] == 3
        assert "pretrain" not in r["message"]
    # the default is MLIP-2's 75, on top of --max-iter
    assert main(["train", "--optimizer", "native-bfgs", "--max-iter", "0", *REF10, "--output",
                 str(tmp_path / "default"), "--quiet"]) == 0
    assert "max 75 pre-training + 0 iterations" in capsys.readouterr().out
    assert main(["train", "--optimizer", "native-bfgs", "--skip-pretrain", "--pretrain-iter", "4", *REF10]) == 2
    assert "--skip-pretrain" in capsys.readouterr().err


def test_starting_points(tmp_path, capsys):
    """--start resolve (the default for full batch) starts lower than the species fit, which starts lower than θ as
    initialised; --start none and --no-species-fit leave θ₀ as it is."""
    finals = {}
    for start in ("none", "species", "resolve", None):
        out = tmp_path / str(start)
        flags = ["--start", start] if start else []
        assert main(["train", "--optimizer", "BFGS", "--max-iter", "0", *flags, *REF10, "--output", str(out),
                     "--quiet"]) == 0
        finals[start] = _metrics(out)["final_loss"]
        assert json.loads((out / "metrics.json").read_text())["settings"]["start"] == (start or "resolve")
    assert finals["resolve"] < 0.5 * finals["species"] and finals["species"] < 0.5 * finals["none"]
    assert finals[None] == finals["resolve"]
    untrained = MTP.read(tmp_path / "resolve" / "trained.mtp")
    assert np.array_equal(MTP.read(tmp_path / "none" / "trained.mtp").theta,
                          MTP.from_level(6, species=untrained.species, min_dist=2.0, max_dist=5.0).theta)
    out = tmp_path / "alias"
    assert main(["train", "--optimizer", "BFGS", "--max-iter", "0", "--no-species-fit", *REF10, "--output", str(out),
                 "--quiet"]) == 0
    assert _metrics(out)["final_loss"] == finals["none"]
    assert main(["train", "--no-species-fit", "--start", "resolve", *REF10]) == 2
    assert "--no-species-fit" in capsys.readouterr().err


def test_starting_point_and_passes_summary_functions():
    from scipy.optimize import OptimizeResult

    from mtpfit import Loss, Objective
    from mtpfit.io import read_configurations
    from mtpfit.train import passes_summary, starting_point

    data = read_configurations(LEVEL08 / "ref10.cfg")
    mtp = MTP.from_level(6, species=data.species(), min_dist=2.0, max_dist=5.0)
    objective = Objective(mtp, data, Loss())
    x0 = mtp.theta
    resolved, species = starting_point(objective, x0), starting_point(objective, x0, "species")
    assert objective.fun(resolved) < 0.5 * objective.fun(species) < objective.fun(x0)
    # the radial functions are scaled to unit norm first: moment coefficients of ~1e2, not ~1e6
    assert np.max(np.abs(resolved[mtp.blocks["moment"]])) < 1e4
    assert np.array_equal(starting_point(objective, x0, "none"), x0)
    assert np.array_equal(starting_point(objective, x0, method="native-bfgs+LM"), x0)  # it re-solves by itself
    assert np.array_equal(starting_point(objective, x0, method="adam"), species)  # the zoo's default
    with pytest.raises(ValueError, match="start"):
        starting_point(objective, x0, "random")
    bfgs = OptimizeResult(nfev=12, njev=12, nit=10)  # scipy's njev counts gradient evaluations
    assert passes_summary(bfgs, "BFGS") == "12 loss+gradient passes"
    assert passes_summary(OptimizeResult(nfev=7, njev=5), "LM") == "7 loss passes, 5 JᵀWJ builds"
    assert passes_summary(OptimizeResult(nfev=40, n_resolves=3), "native-bfgs") == \
        "40 loss+gradient passes, 3 linear solves"
    hybrid = OptimizeResult(nfev=19, stages=[OptimizeResult(nfev=12.5), OptimizeResult(nfev=7, njev=5)])
    assert passes_summary(hybrid, "adam+GN") == "adam: 12.5 loss+gradient passes; GN: 7 loss passes, 5 JᵀWJ builds"


def test_integer_species_in_a_config_file(tmp_path):
    """TOML gives `species = [0, 1, 2]` as integers: the .cfg type indices, not a crash."""
    config = tmp_path / "run.toml"
    config.write_text('species = [0, 1, 2]\nlevel = 6\nmax_iter = 2\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--train", str(LEVEL08 / "train100.cfg"), "--output", str(out),
                 "--threads", "1", "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["optimizer"]["nit"] == 2


def test_optimizer_names_are_case_insensitive_and_misspellings_get_suggestions(capsys):
    from mtpfit.train.config import canonical_optimizer as _canonical_optimizer
    assert _canonical_optimizer("bfgs") == "BFGS"
    assert _canonical_optimizer("VARPRO-lm") == "varpro-LM"
    assert _canonical_optimizer("Schedule-Free-SGD") == "schedule_free_sgd"
    assert _canonical_optimizer("Adam+l-bfgs-b") == "adam+L-BFGS-B"
    with pytest.raises(ValueError, match=r"did you mean 'L-BFGS-B'.*native-bfgs.*LM.*soap_muon"):
        _canonical_optimizer("adam+l-bfgs")
    assert main(["train", "--optimizer", "levenberg"]) == 2
    err = capsys.readouterr().err
    assert "levenberg" in err and "varpro-LM" in err and "GN" in err      # every trainer is listed
