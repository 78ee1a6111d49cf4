"""The command line: a short training run writes its files; bad input gives a clear message and exit code 2."""
import csv
import json

import numpy as np
import pytest

from conftest import DATA
from mtpfit import MTP
from mtpfit.cli import main

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
    assert len(rows) == 12 and float(rows[-1]["loss"]) < 0.9 * float(rows[0]["loss"])
    # a smaller initial damping reaches a lower loss in the same iterations from this start
    bold = tmp_path / "lm-bold"
    assert main(["train", "--optimizer", "LM", "--max-iter", "12", "--lm-tau", "1e-6", "--train",
                 str(LEVEL08 / "train100.cfg"), "--level", "6", "--output", str(bold), "--quiet"]) == 0
    bold_rows = list(csv.DictReader(open(bold / "history.csv")))
    assert float(bold_rows[-1]["loss"]) < float(rows[-1]["loss"])
    out = tmp_path / "bfgs-lm"
    assert main(["train", "--optimizer", "BFGS+LM", "--max-iter", "5", "--refine-iter", "3", "--train",
                 str(LEVEL08 / "train100.cfg"), "--level", "6", "--output", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["optimizer"]["message"].startswith("BFGS: ") and "; LM: " in metrics["optimizer"]["message"]
    stages = [r["stage"] for r in csv.DictReader(open(out / "history.csv"))]
    assert stages.count("1") == 5 and stages.count("2") == 3
    assert main(["train", "--optimizer", "adam+sgd"]) == 2
