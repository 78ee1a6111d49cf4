"""Faults in campaigns: damaged result files are named, rerun by ``bench`` and left out by ``report``; results are
written atomically; workers die with the ``bench`` process; a killed campaign resumes to the same report."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mtpfit
from conftest import DATA
from mtpfit.bench import DamagedResultWarning, ResultFileError, load_campaign, read_result, write_report
from mtpfit.bench.aggregate import load_results, summarize
from mtpfit.bench.results import RESULT_NAME, checksum, write_result
from mtpfit.bench.runner import run_and_save, training_config
from mtpfit.cli import main

# two quick runs, then two of about half a second each: a kill after the first result files lands in the slow ones
CAMPAIGN = """
name = "faults"
seeds = [1, 2]
[datasets.multi20]
file = "data/frames.cfg"
validation_fraction = 0.25
[models.l06]
level = 6
[[optimizers]]
name = "L-BFGS-B"
max_iter = 4
[[optimizers]]
name = "adam"
epochs = %d
batch_size = 4
"""
# subprocesses import this mtpfit (the checkout's or the installed one)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in (str(Path(mtpfit.__file__).parents[1]), os.environ.get("PYTHONPATH")) if p)}


def _campaign(folder: Path, epochs: int = 2) -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    text = (DATA / "mlip2" / "level08_multi" / "train100.cfg").read_text()
    (folder / "data" / "frames.cfg").write_text("END_CFG\n".join(text.split("END_CFG\n")[:20]) + "END_CFG\n")
    path = folder / "faults.toml"
    path.write_text(CAMPAIGN % epochs)
    return path


def _run_in_process(campaign) -> None:
    """Every run, one after the other in this process (no pool: quick, and the same records)."""
    for spec in campaign.runs:
        run_and_save(spec, str(campaign.path.parent), str(campaign.result_path(spec)))


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A valid result file (the first run of the campaign)."""
    campaign = load_campaign(_campaign(tmp_path_factory.mktemp("good")))
    spec = campaign.runs[0]
    run_and_save(spec, str(campaign.path.parent), str(campaign.result_path(spec)))
    return campaign.result_path(spec)


def _edit(record: dict, where: str, value) -> dict:
    record = json.loads(json.dumps(record))
    *parents, key = where.split(".")
    table = record
    for part in parents:
        table = table[part]
    table[key] = value
    return record


def test_a_result_file_carries_a_checksum_and_reads_back(good, tmp_path):
    record = read_result(good)
    assert record["checksum"] == checksum(record) and len(record["checksum"]) == 64
    assert list(good.parent.glob("*.tmp")) == []
    legacy = {k: v for k, v in record.items() if k != "checksum"}  # files written before checksums
    (tmp_path / good.name).write_text(json.dumps(legacy))
    assert read_result(tmp_path / good.name) == legacy


@pytest.mark.parametrize("damage, reason", [
    (lambda text, r: text[:len(text) // 2], "not a readable JSON result (JSONDecodeError"),
    (lambda text, r: "", "not a readable JSON result"),
    (lambda text, r: '{"x": 1}', "missing key(s) 'spec', 'result', 'history', 'machine'"),
    (lambda text, r: "[1, 2]", "not a JSON object"),
    (lambda text, r: b"\xff\xfe{}", "UnicodeDecodeError"),
    (lambda text, r: "[" * 100000, "RecursionError"),
    (lambda text, r: json.dumps(_edit(r, "result.final_loss", r["result"]["final_loss"] * 1.001)),
     "checksum mismatch"),
    (lambda text, r: json.dumps(_edit(r, "history", r["history"][:-1])), "history has 3 entries for 4 iterations"),
    (lambda text, r: json.dumps(_edit(r, "result.wall_time_s", float("nan"))),
     "result.wall_time_s is NaN, not a finite number"),
    (lambda text, r: json.dumps(_edit(r, "result.passes", True)), "result.passes is true, not a finite number"),
    (lambda text, r: json.dumps(_edit(r, "result.final_loss", None)), "yet the run did not diverge"),
    (lambda text, r: json.dumps(_edit(r, "result.errors.validation.epa_rmse", "1")),
     "result.errors is {"),
    (lambda text, r: json.dumps(_edit(r, "spec.seed", "1")), 'spec.seed is "1", not an integer'),
    (lambda text, r: json.dumps(_edit(r, "spec.seed", 7)), "its spec belongs to the result file"),
    (lambda text, r: json.dumps({k: v for k, v in r.items() if k != "history"}), "missing key(s) 'history'"),
    (lambda text, r: text.replace('"checksum"', '"checksun"'), "unknown key(s) 'checksun'"),
])
def test_damaged_result_files_are_named(good, tmp_path, damage, reason):
    path = tmp_path / good.name
    content = damage(good.read_text(), json.loads(good.read_text()))
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ResultFileError) as caught:
        read_result(path)
    assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value)


def test_the_committed_study_passes_validation():
    """The validator must not reject the study's result files (``bench`` would redo hours of runs)."""
    files = [p for p in (Path(__file__).parents[1] / "benchmarks" / "results").rglob("*.json")
             if RESULT_NAME.fullmatch(p.name)]
    assert len(files) >= 30   # campaign 1 alone has 30; the rerun of the others adds to them
    for path in files:
        read_result(path)


CAMPAIGNS = Path(__file__).parents[1] / "benchmarks" / "campaigns"


@pytest.mark.parametrize("path", sorted(CAMPAIGNS.glob("*.toml")), ids=lambda p: p.stem)
def test_a_committed_campaign_names_data_files_that_exist(path):
    """A missing file stops ``bench`` only when its turn comes, hours into a plan (mlearn's Ni training set was
    named from a snapshot that lacks it); every run's settings are ones the trainer takes."""
    campaign = load_campaign(path)
    for run in campaign.runs:   # the trainer takes every run's settings (checked without data)
        training_config(run, None, None)
    named = {path.parent / name for run in campaign.runs for key in ("train", "validation", "file")
             for name in np.atleast_1d(run["dataset"].get(key, []))}
    for file in named:
        if "shared" in file.parts and not (Path(__file__).parents[2] / "shared").is_dir():
            pytest.skip("../shared (the study's datasets) is absent on this machine")
        assert file.is_file(), f"{path.name} names {file}, which does not exist"


def test_a_folder_in_place_of_a_result_file_is_named(good, tmp_path):
    (tmp_path / good.name).mkdir()
    with pytest.raises(ResultFileError, match="not a readable JSON result"):
        read_result(tmp_path / good.name)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_corruption_is_caught_or_harmless(good, tmp_path, data):
    """Truncations, byte changes and deleted spans of a result file: reading it gives the original record (a
    change in white space) or a ResultFileError, never another exception nor a different record."""
    original = good.read_bytes()
    at = data.draw(st.integers(0, len(original) - 1), label="at")
    kind = data.draw(st.sampled_from(["truncate", "byte", "delete"]), label="kind")
    if kind == "truncate":
        damaged = original[:at]
    elif kind == "byte":
        damaged = original[:at] + bytes([data.draw(st.integers(0, 255), label="byte")]) + original[at + 1:]
    else:
        damaged = original[:at] + original[at + data.draw(st.integers(1, 40), label="span"):]
    path = tmp_path / good.name
    path.write_bytes(damaged)
    try:
        record = read_result(path)
    except ResultFileError as err:
        assert str(err).startswith(str(path))
    else:
        assert record == json.loads(original)


def test_writes_are_atomic_and_refuse_bad_records(good, tmp_path, monkeypatch):
    record = read_result(good)
    path = tmp_path / good.name
    write_result(path, record)
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_result(path, _edit(record, "result.message", "a newer run"))
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    fresh = tmp_path / "fresh" / good.name
    with pytest.raises(ResultFileError, match="history is not a list of finite numbers"):
        write_result(fresh, _edit(record, "history", [1.0, float("inf"), 1.0, 1.0]))
    assert not fresh.parent.exists() or list(fresh.parent.iterdir()) == []


def test_list_and_report_name_damaged_files_and_leave_them_out(tmp_path, capsys):
    campaign = load_campaign(_campaign(tmp_path), tmp_path / "results")
    _run_in_process(campaign)
    truncated, junk = (campaign.result_path(spec) for spec in campaign.runs[1:3])
    truncated.write_text(truncated.read_text()[:500])
    junk.write_text('{"x": 1}')
    assert [campaign.result_path(s) for s in campaign.pending()] == [truncated, junk]
    assert sorted(campaign.damaged()) == sorted([truncated, junk])
    with pytest.warns(DamagedResultWarning) as caught:
        assert main(["bench", str(campaign.path), "--results", str(tmp_path / "results"), "--list"]) == 0
    caught = [w for w in caught if w.category is DamagedResultWarning]  # not the seeds of L-BFGS-B (IdenticalSeeds)
    assert sorted(str(w.message).split(":")[0] for w in caught) == sorted([str(truncated), str(junk)])
    assert all("`mtpfit bench` runs it again" in str(w.message) for w in caught)
    out = capsys.readouterr().out
    assert f"results in {campaign.results}" in out
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["done", "damaged", "damaged", "done"]
    with pytest.warns(DamagedResultWarning, match="left out of the results") as caught:
        report = write_report(tmp_path / "results").read_text()
    assert len(caught) == 2
    line = next(line for line in report.splitlines() if "damaged" in line)
    assert line.startswith("2 damaged result file(s) are left out (`mtpfit bench` runs them again): `faults/")
    assert f"`faults/{junk.name}` (missing key(s) " in line and f"`faults/{truncated.name}` (not a readable" in line
    runs = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert sorted(runs.file) == sorted(str(campaign.result_path(s)) for s in (campaign.runs[0], campaign.runs[3]))


def test_missing_bench_extra_is_named(tmp_path):
    campaign = _campaign(tmp_path)
    script = ("import sys; sys.modules['pandas'] = None\n"  # as if pandas were not installed
              "from mtpfit.cli import main\n"
              f"print(main(['bench', {str(campaign)!r}, '--list']), main(['report', {str(tmp_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["2", "2"], done.stderr
    for command in ("bench", "report"):
        assert f'mtpfit: error: mtpfit {command} needs pandas, which is not installed: pip install "mtpfit[bench]"' \
            in done.stderr


def _start_bench(campaign: Path, results: Path, *options: str) -> subprocess.Popen:
    """``mtpfit bench`` in a subprocess of its own process group (as a terminal runs it), its output in
    ``results``/../bench.log (a pipe could fill and block it)."""
    with open(results.parent / "bench.log", "w") as log:
        return subprocess.Popen([sys.executable, "-m", "mtpfit", "bench", str(campaign), "--results", str(results),
                                 "--workers", "2", *options], env=ENV, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for_results(bench: subprocess.Popen, folder: Path, count: int) -> list[psutil.Process]:
    """Wait until ``count`` result files exist; returns the bench process's descendants (its workers)."""
    parent, family = psutil.Process(bench.pid), {}
    deadline = time.monotonic() + 120
    while len(list(folder.glob("*.json"))) < count:
        assert bench.poll() is None, (folder.parents[1] / "bench.log").read_text()
        assert time.monotonic() < deadline, "no result file in 120 s"
        family.update({p.pid: p for p in parent.children(recursive=True)})
        time.sleep(0.01)
    family.update({p.pid: p for p in parent.children(recursive=True)})
    return list(family.values())


def _survivors(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still running after ``timeout`` seconds (a zombie waiting to be reaped has ended)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in processes:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _comparable(record: dict) -> dict:
    """A result record without what depends on the machine and the moment."""
    result = {k: v for k, v in record["result"].items() if k not in ("wall_time_s", "start_s")}
    return {"spec": record["spec"], "result": result, "history": record["history"]}


def test_kill_9_then_rerun_runs_only_unfinished_and_damaged_runs(tmp_path, capsys):
    """Acceptance 4 of issue 14: SIGKILL of ``mtpfit bench`` once results appear (its workers must end with it),
    a truncated result file, a rerun: only the unfinished and the damaged runs run again, and the report matches
    that of an uninterrupted campaign."""
    path = _campaign(tmp_path, epochs=60)
    campaign = load_campaign(path, tmp_path / "killed")
    bench = _start_bench(path, tmp_path / "killed")
    workers = []
    try:
        workers = _wait_for_results(bench, campaign.results, 2)
        os.kill(bench.pid, signal.SIGKILL)
        bench.wait(10)
        assert len(workers) >= 2
        assert _survivors(workers, timeout=10) == []
    finally:
        for p in _survivors(workers, timeout=0):
            p.kill()
    files = sorted(campaign.results.glob("*.json"))
    assert 2 <= len(files) < 4, "the kill came after the slow runs had finished"
    for file in files:
        read_result(file)  # written whole or not at all, even under SIGKILL
    damaged, intact = files[0], files[1:]
    damaged.write_text(damaged.read_text()[:300])
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in intact}
    with pytest.warns(DamagedResultWarning, match=f"{damaged}: damaged result file .*; its run is done again"):
        assert main(["bench", str(path), "--results", str(tmp_path / "killed"), "--workers", "2"]) == 0
    done = len(intact)
    assert f"4 runs, {done} done, {4 - done} to run (1 damaged)" in capsys.readouterr().out
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in intact} == stamps
    uninterrupted = load_campaign(path, tmp_path / "whole")
    _run_in_process(uninterrupted)
    resumed = {p.name: _comparable(read_result(p)) for p in campaign.results.glob("*.json")}
    whole = {p.name: _comparable(read_result(p)) for p in uninterrupted.results.glob("*.json")}
    assert len(resumed) == 4 and resumed == whole
    # the report's tables, without its plots
    cells = [summarize(load_results(tmp_path / results)) for results in ("killed", "whole")]
    pd.testing.assert_frame_equal(*(c[[k for k in c.columns if not k.startswith("wall_time")]] for c in cells))


@pytest.mark.parametrize("how", ["dask", "ctrl-c"])
def test_workers_end_with_the_campaign(tmp_path, how):
    """A local Dask cluster's workers end with a killed ``bench`` too; Ctrl-C (SIGINT to the process group, as
    from a terminal) stops the pool's workers at once (the runs in progress are not saved) and ``bench`` exits
    with 130."""
    path = _campaign(tmp_path, epochs=1000)   # adam runs of seconds: still running when the first result lands
    campaign = load_campaign(path, tmp_path / "results")
    bench = _start_bench(path, tmp_path / "results", *(["--dask"] if how == "dask" else []))
    workers = []
    try:
        workers = _wait_for_results(bench, campaign.results, 1)
        if how == "dask":
            os.kill(bench.pid, signal.SIGKILL)
        else:
            os.killpg(bench.pid, signal.SIGINT)
        code = bench.wait(10)
        assert len(workers) >= 2 and _survivors(workers, timeout=10) == []
    finally:
        for p in _survivors(workers, timeout=0):
            p.kill()
    if how == "ctrl-c":
        log = (tmp_path / "bench.log").read_text()
        assert code == 130 and "mtpfit bench: interrupted; the finished runs are saved" in log, log
        assert len(campaign.pending()) >= 2 and campaign.damaged() == {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the test forks")
def test_the_lifeline_without_prctl(tmp_path):
    """Where there is no prctl (macOS), a thread polling the parent's pid ends the worker."""
    script = f"""
import os, sys, time
from mtpfit.bench.execute import _die_with_parent
worker = os.fork()
if worker == 0:
    sys.platform = "darwin"
    _die_with_parent(os.getppid())
    open({str(tmp_path / "ready")!r}, "w").close()
    time.sleep(60)
    os._exit(0)
print(worker, flush=True)
time.sleep(60)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], env=ENV, stdout=subprocess.PIPE, text=True)
    worker = psutil.Process(int(parent.stdout.readline()))
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "ready").exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        parent.kill()
        parent.wait()
        assert _survivors([worker], timeout=5) == []
    finally:
        for p in _survivors([worker], timeout=0):
            p.kill()
