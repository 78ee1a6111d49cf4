"""Faults in training (issue 14): kill -9 and resume on the same trajectory, clean stops on SIGINT/SIGTERM, no
silent overwrite, output paths checked first, damaged checkpoints refused by name."""
import contextlib
import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mtpfit
from conftest import DATA
from mtpfit import MTP, Loss, Objective
from mtpfit.cli import main
from mtpfit.io import read_configurations
from mtpfit.optim import make_optimizer
from mtpfit.optim.state import join_state, split_state
from mtpfit.train import starting_point, train_full_batch
from mtpfit.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mtpfit.train.hybrid import train_hybrid
from mtpfit.train.minibatch import train_minibatch

REF10 = DATA / "mlip2" / "level08_multi" / "ref10.cfg"
COMMON = ["train", "--train", str(REF10), "--level", "6", "--threads", "1", "--quiet"]

# Runs of about a second on one core, with several checkpoints (CHECKPOINTS) to be killed between.
RUNS = {
    "BFGS": ["--optimizer", "BFGS", "--max-iter", "40", "--checkpoint-every", "3"],
    "native-bfgs": ["--optimizer", "native-bfgs", "--pretrain-iter", "10", "--max-iter", "50",
                    "--checkpoint-every", "4"],
    "LM": ["--optimizer", "LM", "--max-iter", "15", "--checkpoint-every", "1"],
    "varpro": ["--checkpoint-every", "5", "--max-iter", "100"],          # the default trainer
    "adam": ["--optimizer", "adam", "--epochs", "200", "--batch-size", "2", "--checkpoint-every", "20"],
}
CHECKPOINTS = {"BFGS": 13, "native-bfgs": 15, "LM": 15, "varpro": 20, "adam": 50}   # 5 adam steps per epoch


def _quiet_main(argv) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main(argv)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """name → the folder of the uninterrupted run, made once (in a fresh process, as the killed run is)."""
    made = {}

    def reference(name):
        if name not in made:
            made[name] = tmp_path_factory.mktemp(f"ref-{name}")
            _run([*COMMON, *RUNS[name]], made[name])
        return made[name]

    return reference


def _start(argv, folder) -> subprocess.Popen:
    # Every run of a comparison in a fresh process with this environment: after the rest of the suite, an LM run
    # inside the pytest process differed from fresh-process runs in the last bits (the process-wide state earlier
    # tests leave, most likely BLAS/OpenMP threading, which LAPACK's round-off depends on; not isolated).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(mtpfit.__file__).parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "mtpfit", *argv, "--output", str(folder)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _run(argv, folder) -> None:
    process = _start(argv, folder)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended before writing {path}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.02)


def _kill_at_a_random_moment(process: subprocess.Popen, path: Path, checkpoints: int) -> str:
    """SIGKILL ``process`` a random fraction of a checkpoint interval after a random one of the first third of its
    ``checkpoints`` (each is a new file: os.replace), so the kill lands well before the end: mid-iteration,
    mid-line-search or mid-write."""
    target = random.randint(1, max(1, checkpoints // 3))
    seen, inode, last, interval = 0, None, None, 0.05
    deadline = time.monotonic() + 120.0
    while seen < target:
        assert process.poll() is None, f"the run ended before its checkpoint {target}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"no checkpoint {target} after 120 s"
        with contextlib.suppress(FileNotFoundError):
            now = os.stat(path).st_ino
            if now != inode:
                seen, inode = seen + 1, now
                clock = time.monotonic()
                interval = clock - last if last is not None else interval
                last = clock
        time.sleep(0.002)
    delay = random.uniform(0.0, interval)
    time.sleep(delay)
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before the kill"
    return f"killed {delay:.3f} s after checkpoint {target}"


def _same_run(a: Path, b: Path) -> None:
    """The trained potentials are identical to the bit, and so are the loss histories."""
    assert (a / "trained.mtp").read_bytes() == (b / "trained.mtp").read_bytes()
    assert np.array_equal(MTP.read(a / "trained.mtp").theta, MTP.read(b / "trained.mtp").theta)
    loss = "batch_loss" if "batch_loss" in (a / "history.csv").read_text().partition("\n")[0] else "loss"

    def column(folder):
        return [row[loss] for row in csv.DictReader(open(folder / "history.csv"))]

    assert column(a) == column(b)


@pytest.mark.parametrize("name", list(RUNS))
def test_kill_9_at_a_random_moment_then_resume_is_bit_identical(name, references, tmp_path):
    """Acceptance 3: SIGKILL after the first checkpoint, then --resume: the same potential as an uninterrupted
    run, bit for bit (the kill may land mid-iteration or mid-write: checkpoints are written atomically)."""
    reference = references(name)
    folder = tmp_path / "run"
    process = _start([*COMMON, *RUNS[name]], folder)
    when = _kill_at_a_random_moment(process, folder / "checkpoint.npz", CHECKPOINTS[name])
    print(when)
    _run([*COMMON, *RUNS[name], "--resume"], folder)
    _same_run(folder, reference)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_stop_cleanly_with_every_output_and_exit_130(sig, references, tmp_path):
    """Ctrl-C or SIGTERM in the default trainer: one line, no traceback, exit 130, the potential, history and
    checkpoint of the last iterate written; --resume then finishes the uninterrupted run's trajectory."""
    reference = references("varpro")
    folder = tmp_path / "run"
    process = _start([*COMMON, *RUNS["varpro"]], folder)
    _wait_for(folder / "checkpoint.npz", process)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    said = [line for line in err.splitlines() if line.startswith("mtpfit:")]
    assert "Traceback" not in err and len(said) == 1 and f"interrupted by {signal.Signals(sig).name} after" in said[0]
    metrics = (folder / "metrics.json").read_text()
    assert '"interrupted": true' in metrics
    done = len(list(csv.DictReader(open(folder / "history.csv"))))
    assert 0 < done < 100
    _, state, _ = load_checkpoint(folder / "checkpoint.npz")
    assert state["nit"] == done
    assert np.array_equal(MTP.read(folder / "trained.mtp").theta, MTP.read(folder / "checkpoint.mtp").theta)
    _run([*COMMON, *RUNS["varpro"], "--resume"], folder)
    _same_run(folder, reference)


@pytest.fixture(scope="module")
def problem():
    data = read_configurations(REF10)
    mtp = MTP.from_level(6, species=data.species(), min_dist=2.0, max_dist=5.0)
    return mtp, data


def _stop_after(n):
    calls = [0]

    def stop():
        calls[0] += 1
        return "TEST" if calls[0] == n else None

    return stop


@pytest.mark.parametrize("method, n, stop_at, options", [
    ("L-BFGS-B", 20, 10, {}), ("CG", 20, 10, {}), ("trust-krylov", 12, 6, {}), ("GN", 4, 2, {}),
    ("LM", 3, 2, {"sketch": 2}), ("varpro-LM", 3, 2, {}), ("native-bfgs", 4, 3, {"pretrain_iter": 6})])
def test_the_other_full_batch_trainers_resume_exactly(method, n, stop_at, options, problem, tmp_path):
    """Stopped after ``stop_at`` iterations and resumed: the uninterrupted run, bit for bit. scipy's methods retrace
    their run from the evaluation log; the others restore their iterate (a sketched JᵀWJ its seed, the native BFGS
    its pre-training phase)."""
    mtp, data = problem
    objective = Objective(mtp, data, Loss(), n_threads=1)
    x0 = starting_point(objective, mtp.theta, method=method)
    settings = dict(max_iter=n, log_every=0, progress=None, **options)
    straight = train_full_batch(objective, x0, method, **settings)
    ckpt = tmp_path / "run.npz"
    stopped = train_full_batch(Objective(mtp, data, Loss(), n_threads=1), x0, method, checkpoint=ckpt,
                               checkpoint_every=2, stop=_stop_after(stop_at), **settings)
    assert stopped.interrupted and stopped.result.nit == stop_at and "interrupted by TEST" in stopped.result.message
    resumed = train_full_batch(Objective(mtp, data, Loss(), n_threads=1), x0, method, checkpoint=ckpt, **settings)
    assert np.array_equal(resumed.result.x, straight.result.x)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]


@pytest.mark.parametrize("method", ["BFGS", "varpro"])
def test_ctrl_c_inside_an_iteration_keeps_the_last_completed_one(method, problem, tmp_path):
    """A KeyboardInterrupt (a second Ctrl-C, or Ctrl-C in Python) ends the run at its last completed iteration,
    checkpointed and resumable."""
    mtp, data = problem
    objective = Objective(mtp, data, Loss(), n_threads=1)
    x0 = starting_point(objective, mtp.theta, method=method)
    settings = dict(max_iter=12, log_every=0, progress=None)
    straight = train_full_batch(objective, x0, method, **settings)
    calls = [0]

    def interrupt():
        calls[0] += 1
        if calls[0] == 5:
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.npz"
    run = train_full_batch(Objective(mtp, data, Loss(), n_threads=1), x0, method, checkpoint=ckpt, stop=interrupt,
                           **settings)
    assert run.interrupted and run.result.nit == 5 and "interrupted by SIGINT after 5" in run.result.message
    assert np.array_equal(MTP.read(tmp_path / "run.mtp").theta, run.result.x)
    resumed = train_full_batch(Objective(mtp, data, Loss(), n_threads=1), x0, method, checkpoint=ckpt, **settings)
    assert np.array_equal(resumed.result.x, straight.result.x)


def test_a_hybrid_resumes_in_either_stage(problem, tmp_path):
    """Adam → L-BFGS-B (the study's hybrid) stopped in its first or second stage resumes on the same trajectory."""
    mtp, data = problem
    objective = Objective(mtp, data, Loss(), n_threads=1)
    x0 = starting_point(objective, mtp.theta, method="adam")
    settings = dict(epochs=3, batch_size=2, max_iter=6, progress=None)
    straight = train_hybrid(objective, make_optimizer("adam"), "L-BFGS-B", x0, **settings)
    for stop_at in (7, 18):   # 15 adam steps, then 6 L-BFGS-B iterations
        folder = tmp_path / str(stop_at)
        run = train_hybrid(Objective(mtp, data, Loss(), n_threads=1), make_optimizer("adam"), "L-BFGS-B", x0,
                           checkpoint_dir=folder, stop=_stop_after(stop_at), **settings)
        assert run.interrupted and len(run.history) == stop_at
        resumed = train_hybrid(Objective(mtp, data, Loss(), n_threads=1), make_optimizer("adam"), "L-BFGS-B", x0,
                               checkpoint_dir=folder, **settings)
        assert np.array_equal(resumed.result.x, straight.result.x), stop_at
        assert [r.get("loss", r.get("batch_loss")) for r in resumed.history] == \
            [r.get("loss", r.get("batch_loss")) for r in straight.history]


def test_an_earlier_run_is_never_overwritten_silently(tmp_path, capsys):
    folder = tmp_path / "run"
    argv = [*COMMON, "--optimizer", "BFGS", "--max-iter", "4", "--output", str(folder)]
    assert _quiet_main(argv) == 0
    trained = (folder / "trained.mtp").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "--resume" in err and "--overwrite" in err
    # a resume must be of the same run: other settings than budgets and reporting are refused, naming them
    assert main([*argv, "--resume", "--level", "8"]) == 2
    assert "level (was 6, now 8)" in capsys.readouterr().err
    assert (folder / "trained.mtp").read_bytes() == trained
    assert main([*argv, "--resume", "--overwrite"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert main([*COMMON, "--output", str(tmp_path / "empty"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    # --overwrite starts over (here with another optimizer); its old checkpoint is not resumed
    assert _quiet_main([*COMMON, "--optimizer", "LM", "--max-iter", "1", "--output", str(folder),
                        "--overwrite"]) == 0
    assert len(list(csv.DictReader(open(folder / "history.csv")))) == 1


def test_output_paths_are_checked_before_anything_is_read(tmp_path, capsys):
    """The data file does not exist: each output problem is reported first, so before any training."""
    missing = ["train", "--train", str(tmp_path / "missing.cfg")]
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert main([*missing, "--output", str(a_file)]) == 2
    assert f"--output {a_file} is a file" in capsys.readouterr().err
    assert main([*missing, "--output", str(a_file / "run")]) == 2
    assert f"{a_file} is a file" in capsys.readouterr().err
    (tmp_path / "run" / "trained.mtp").mkdir(parents=True)
    assert main([*missing, "--output", str(tmp_path / "run")]) == 2
    assert f"{tmp_path / 'run' / 'trained.mtp'} is a folder" in capsys.readouterr().err
    assert main([*missing, "--output", str(tmp_path / "new")]) == 2
    assert "missing.cfg" in capsys.readouterr().err and not (tmp_path / "new").exists()


def _checkpointed_run(tmp_path, capsys, *flags):
    folder = tmp_path / "run"
    argv = [*COMMON, "--optimizer", "BFGS", "--max-iter", "6", "--checkpoint-every", "2", "--output", str(folder)]
    assert _quiet_main([*argv, *flags]) == 0
    capsys.readouterr()
    return folder, argv


def test_damaged_checkpoints_are_refused_naming_the_file(tmp_path, capsys):
    folder, argv = _checkpointed_run(tmp_path, capsys)
    ckpt = folder / "checkpoint.npz"
    good = ckpt.read_bytes()
    trained = (folder / "trained.mtp").read_bytes()
    params, state, meta = load_checkpoint(ckpt)
    damaged = {"truncated": good[: len(good) // 2], "empty": b"",
               "flipped byte": good[:200] + bytes([good[200] ^ 1]) + good[201:]}
    for what, content in damaged.items():
        ckpt.write_bytes(content)
        assert main([*argv, "--resume"]) == 2, what
        err = capsys.readouterr().err
        assert str(ckpt) in err and "Traceback" not in err and "BadZipFile" not in err, what
    # written by save_checkpoint (a valid checksum) but not resumable
    forged = {"non-finite θ": (np.full_like(params, np.nan), state, meta, "NaN"),
              "step 1e9": (params, {**state, "nit": 10 ** 9}, meta, "history rows"),
              "another trainer": (params, state, {**meta, "method": "LM"}, "another run")}
    for what, (p, s, m, says) in forged.items():
        save_checkpoint(ckpt, p, s, m)
        assert main([*argv, "--resume"]) == 2, what
        err = capsys.readouterr().err
        assert str(ckpt) in err and says in err, (what, err)
    # a valid checkpoint past the requested iterations: refused, not reported as trained
    ckpt.write_bytes(good)
    assert main([*argv, "--max-iter", "3", "--resume"]) == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and "iteration 6" in err and "3 iterations" in err
    assert (folder / "trained.mtp").read_bytes() == trained


def test_a_checkpoint_of_another_schema_is_refused(tmp_path, monkeypatch):
    from mtpfit.train import checkpoint

    path = tmp_path / "c.npz"
    monkeypatch.setattr(checkpoint, "SCHEMA", "mtpfit-checkpoint/0")
    save_checkpoint(path, np.zeros(3), {}, {})
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=f"{path}: schema 'mtpfit-checkpoint/0'"):
        load_checkpoint(path)
    path.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CheckpointError, match=f"{path}: unreadable checkpoint"):
        load_checkpoint(path)


def test_a_minibatch_checkpoint_is_validated(problem, tmp_path):
    mtp, data = problem
    objective = Objective(mtp, data, Loss(), n_threads=1)
    x0 = mtp.theta
    ckpt = tmp_path / "run.npz"
    train_minibatch(objective, make_optimizer("adam"), x0, epochs=2, batch_size=2, checkpoint=ckpt, progress=None)
    params, state, meta = load_checkpoint(ckpt)
    assert meta["step"] == 10 and (tmp_path / "run.mtp").exists()
    cases = [({**meta, "step": 10 ** 9}, {"epochs": 2, "batch_size": 2}, "history rows"),
             (meta, {"epochs": 1, "batch_size": 2}, "beyond the 5 steps"),
             (meta, {"epochs": 2, "batch_size": 3}, "batch_size")]
    for m, kwargs, says in cases:
        save_checkpoint(ckpt, params, state, m)
        with pytest.raises(CheckpointError, match=says) as info:
            train_minibatch(objective, make_optimizer("adam"), x0, checkpoint=ckpt, progress=None, **kwargs)
        assert str(ckpt) in str(info.value), says
    with pytest.raises(CheckpointError, match="another run"):
        save_checkpoint(ckpt, params, state, meta)
        train_minibatch(objective, make_optimizer("sgd"), x0, epochs=2, batch_size=2, checkpoint=ckpt,
                        progress=None)


def test_states_round_trip_bit_for_bit():
    state = {"H": np.random.default_rng(0).normal(size=(3, 3)), "k": np.int64(4), "f": np.float64(0.1) / 3,
             "phase": "main", "history": [{"loss": 1 / 3, "accepted": np.bool_(True), "rho": float("nan")}],
             "sub": {"d": np.arange(3.0), "none": None, "empty": {}}}
    arrays, tree = split_state(state)
    back = join_state(arrays, json.loads(json.dumps(tree)))
    assert np.array_equal(back["H"], state["H"]) and back["k"] == 4 and type(back["k"]) is int
    assert back["f"] == state["f"] and back["phase"] == "main" and back["sub"]["empty"] == {}
    assert back["history"][0]["loss"] == 1 / 3 and back["history"][0]["accepted"] is True
    assert np.isnan(back["history"][0]["rho"]) and np.array_equal(back["sub"]["d"], np.arange(3.0))
    with pytest.raises(ValueError, match="cannot be checkpointed"):
        split_state({"f": object()})


def test_stop_signals_record_the_first_signal_in_training_and_interrupt_otherwise():
    from mtpfit.train.signals import StopSignals

    previous = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        with pytest.raises(KeyboardInterrupt):      # before training: stop at once, as Ctrl-C does
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        with signals.training():
            assert signals() is None
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
            assert signals() == "SIGTERM"             # the trainer stops at its next step
            with pytest.raises(KeyboardInterrupt):  # a second signal does not wait
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is previous
