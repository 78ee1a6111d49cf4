"""Optimizer-study campaigns: identical results on a process pool and on Dask; resume reruns only what is missing."""
import json
import re
import shutil

import numpy as np
import pytest

from conftest import DATA
from mtpfit.bench import load_campaign, run_campaign, spec_hash, write_report
from mtpfit.bench import report as report_module

CAMPAIGN = """
name = "tiny"
description = "2 optimizers x 2 seeds on 20 frames of crystals_multi"
seeds = [1, 2]
[datasets.multi20]
file = "data/frames.cfg"
validation_fraction = 0.25
[models.l06]
level = 6
[[optimizers]]
name = "adam"
epochs = 2
batch_size = 8
[[optimizers]]
label = "scipy L-BFGS"
name = "L-BFGS-B"
max_iter = 4
init_interval = 1e-3
[study]
best_epa = "scipy L-BFGS"
"""


@pytest.fixture
def campaign_file(tmp_path):
    (tmp_path / "data").mkdir()
    text = (DATA / "mlip2" / "level08_multi" / "train100.cfg").read_text()
    (tmp_path / "data" / "frames.cfg").write_text("END_CFG\n".join(text.split("END_CFG\n")[:20]) + "END_CFG\n")
    path = tmp_path / "tiny.toml"
    path.write_text(CAMPAIGN)
    return path


def _records(folder):
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def test_pool_and_dask_give_identical_results(campaign_file, tmp_path):
    pool = load_campaign(campaign_file, tmp_path / "pool")
    assert len(pool.runs) == 4 and len(pool.pending()) == 4
    run_campaign(pool, workers=2, progress=None)
    dask = load_campaign(campaign_file, tmp_path / "dask")
    run_campaign(dask, workers=2, dask="local", progress=None)
    a, b = _records(pool.results), _records(dask.results)
    assert sorted(a) == sorted(b) and len(a) == 4
    for name in a:
        assert a[name]["spec"] == b[name]["spec"]
        assert a[name]["result"]["errors"] == b[name]["result"]["errors"]
        assert a[name]["result"]["final_loss"] == b[name]["result"]["final_loss"]
        assert a[name]["history"] == b[name]["history"]


def test_restart_reruns_only_unfinished_runs(campaign_file, tmp_path):
    campaign = load_campaign(campaign_file, tmp_path / "res")
    run_campaign(campaign, workers=2, progress=None)
    files = sorted(campaign.results.glob("*.json"))
    stamps = {p.name: p.stat().st_mtime_ns for p in files}
    files[1].unlink()  # as if the campaign had been killed before this run finished
    (campaign.results / "stale.json.123.tmp").write_text("{")  # a half-written file from the kill
    again = load_campaign(campaign_file, tmp_path / "res")
    assert len(again.pending()) == 1
    made = run_campaign(again, workers=2, progress=None)
    assert len(made) == 1
    for p in sorted(campaign.results.glob("*.json")):
        if p.name != files[1].name:
            assert p.stat().st_mtime_ns == stamps[p.name]
    assert run_campaign(load_campaign(campaign_file, tmp_path / "res"), progress=None) == []


def test_hash_does_not_depend_on_the_checkout(campaign_file, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(campaign_file.parent, moved, ignore=shutil.ignore_patterns("elsewhere"))
    first = load_campaign(campaign_file, tmp_path / "r")
    second = load_campaign(moved / "tiny.toml", tmp_path / "r")
    assert [spec_hash(s) for s in first.runs] == [spec_hash(s) for s in second.runs]


def test_report_traces_every_number_to_a_result_file(campaign_file, tmp_path, monkeypatch):
    import pandas as pd

    campaign = load_campaign(campaign_file, tmp_path / "results")
    run_campaign(campaign, workers=2, progress=None)
    report = write_report(tmp_path / "results", campaign_file.parent)
    text = report.read_text()
    assert "| multi20 | l06 | adam |" in text and "tiny_spread.png" in text
    assert (tmp_path / "results" / "tiny_loss.png").stat().st_size > 1000
    runs = pd.read_csv(tmp_path / "results" / "runs.csv")
    for _, row in runs.iterrows():
        record = json.loads(open(row.file).read())
        assert record["result"]["errors"]["validation"]["force_rmse"] == pytest.approx(row.val_force_rmse, rel=1e-12)
    assert runs.passes_summary.str.endswith("loss+gradient passes").all()
    summary = pd.read_csv(tmp_path / "results" / "summary.csv")
    adam = runs[runs.label == "adam"].val_epa_rmse
    assert summary[summary.label == "adam"].val_epa_rmse_median.iloc[0] == pytest.approx(adam.median(), rel=1e-12)
    assert "The study found scipy L-BFGS best by validation EPA RMSE" in text
    # cells that all ran to a common wall-time budget tie: none is named the fastest
    fastest = lambda text: re.search(r"by wall time, ([^.]*)\.", text).group(1)  # noqa: E731
    assert fastest(text) in ("adam", "scipy L-BFGS")
    monkeypatch.setattr(report_module, "_TIE", 1e9)
    tied = write_report(tmp_path / "results", campaign_file.parent).read_text()
    assert fastest(tied).startswith("a tie (every cell ran ")


def test_a_trainer_whose_work_is_not_loss_passes_has_no_pass_count():
    """varpro-LM records 0 loss passes (its work is JᵀWJ builds and linear solves): the tables show none, not 0."""
    from mtpfit.bench.aggregate import _loss_passes

    assert np.isnan(_loss_passes({"passes": 0.0, "nit": 42}))
    assert np.isnan(_loss_passes({"passes": None, "nit": None}))     # a diverged run
    assert _loss_passes({"passes": 0.0, "nit": 0}) == 0.0 and _loss_passes({"passes": 57.0, "nit": 40}) == 57.0


def test_bad_campaigns_are_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nseeds = [1]\n[models.a]\nlevel = 6\n[[optimizers]]\nname = "adam"\n')
    with pytest.raises(ValueError, match="bad.toml: the campaign needs a non-empty \\[datasets\\]"):
        load_campaign(path)
    path.write_text(CAMPAIGN.replace('name = "adam"', 'name = "adam"\nlearning_rate = 1'))
    with pytest.raises(ValueError, match="learning_rate"):
        load_campaign(path)
    # [study]: what the report reads, so a typo cannot leave a figure out silently
    for study, message in [('referneces = {}', "unknown key.*referneces"),
                           ('[study.references."BFGS"]\nepa = 2.1\n', "must hold the numbers epa and force"),
                           ('[study.references."BFGS"]\nepa = 2.1\nforce = 0.05\ntime = 9\n', "nothing else"),
                           ('published = { mae = 2.8 }', "published must be"),
                           ('best_epa = 1', "best_epa has the wrong type")]:
        path.write_text(CAMPAIGN.replace('[study]\nbest_epa = "scipy L-BFGS"\n', "[study]\n" + study + "\n"))
        with pytest.raises(ValueError, match=message):
            load_campaign(path)


def test_a_setting_the_trainer_refuses_stops_the_campaign_before_any_run(campaign_file, tmp_path):
    """A bad setting in one run is named before any run starts, not when its turn comes (a force_fraction of 0
    once stopped a campaign six hours in)."""
    campaign_file.write_text(CAMPAIGN + '[[optimizers]]\nlabel = "bad adam"\nname = "adam"\nepochs = 1\n'
                             "[optimizers.hyper]\nbetas = 0.9\n")
    campaign = load_campaign(campaign_file, tmp_path / "results")
    with pytest.raises(ValueError, match=r"refuses the settings of 2 run\(s\)[^$]*run bad adam, seed 1: .*betas"):
        run_campaign(campaign, workers=2, progress=None)
    assert not campaign.results.exists() or not list(campaign.results.glob("*.json"))


def test_wall_time_budget_and_hybrids(campaign_file, tmp_path):
    """``max_seconds`` stops every kind of trainer after its first iteration past the budget; hybrids (mini-batch
    then full batch, full batch then LM) run their two stages."""
    text = CAMPAIGN.split("[[optimizers]]")[0] + """
[[optimizers]]
name = "adam"
epochs = 50
batch_size = 4
max_seconds = 0
[[optimizers]]
name = "BFGS"
max_iter = 50
max_seconds = 0
[[optimizers]]
name = "native-bfgs"
max_iter = 50
max_seconds = 0
[[optimizers]]
name = "adam+L-BFGS-B"
epochs = 1
batch_size = 8
max_iter = 3
[[optimizers]]
name = "BFGS+LM"
max_iter = 3
refine_iter = 2
[[optimizers]]
label = "polish budget"
name = "BFGS+LM"
max_iter = 50
refine_iter = 2
max_seconds = 1000
refine_seconds = 1000
"""
    path = campaign_file.with_name("budget.toml")
    path.write_text(text.replace("seeds = [1, 2]", "seeds = [1]"))
    campaign = load_campaign(path, tmp_path / "budget")
    run_campaign(campaign, workers=1, progress=None)
    records = {r["spec"]["optimizer"].get("label", r["spec"]["optimizer"]["name"]): r
               for r in _records(campaign.results).values()}
    assert records["adam"]["result"]["nit"] == 1 and "wall-time budget" in records["adam"]["result"]["message"]
    assert records["BFGS"]["result"]["nit"] == 1 and not records["BFGS"]["result"]["success"]
    assert records["native-bfgs"]["result"]["nit"] == 1
    hybrid = records["adam+L-BFGS-B"]
    assert hybrid["result"]["nit"] == 2 + 3 and len(hybrid["history"]) == 5
    assert all(v > 0 for v in hybrid["history"])
    polish = records["BFGS+LM"]["result"]
    assert polish["nit"] == 3 + 2 and polish["message"].startswith("BFGS: ") and "; LM: " in polish["message"]
    # refine_seconds keeps that much of max_seconds for the second stage: here all of it, so BFGS stops at once
    assert records["polish budget"]["result"]["nit"] == 1 + 2


def test_changed_runs_leave_stale_files_that_prune_removes(campaign_file, tmp_path, capsys):
    from mtpfit.cli import main

    results = tmp_path / "results"
    campaign = load_campaign(campaign_file, results)
    run_campaign(campaign, workers=2, progress=None)
    campaign_file.write_text(CAMPAIGN.replace("max_iter = 4", "max_iter = 3"))
    changed = load_campaign(campaign_file, results)
    assert len(changed.stale()) == 2 and len(changed.pending()) == 2
    assert main(["bench", str(campaign_file), "--results", str(results), "--list"]) == 0
    assert "2 result file(s) belong to no current run" in capsys.readouterr().out
    assert main(["bench", str(campaign_file), "--results", str(results), "--prune"]) == 0
    assert changed.stale() == [] and changed.pending() == [] and len(list(changed.results.glob("*.json"))) == 4


def test_a_diverged_run_is_recorded_and_the_campaign_goes_on(campaign_file, tmp_path):
    campaign_file.write_text(CAMPAIGN.replace('name = "adam"\nepochs = 2', 'name = "sgd"\nepochs = 2\n'
                                              'hyper = { lr = 1e100 }'))
    campaign = load_campaign(campaign_file, tmp_path / "results")
    run_campaign(campaign, workers=1, progress=None)
    records = _records(campaign.results)
    diverged = [r for r in records.values() if r["result"]["diverged"]]
    assert len(records) == 4 and len(diverged) == 2
    assert all(r["result"]["message"].startswith("diverged: sgd: loss is") for r in diverged)
    report = write_report(tmp_path / "results", campaign_file.parent).read_text()
    assert "| multi20 | l06 | sgd | {} | 2 | — |" in report and report.count("| 2 |") >= 1
    # a diverged run's wall time is when it blew up: the cell has no time, and is not the fastest
    sgd_row = next(line for line in report.splitlines() if line.startswith("| multi20 | l06 | sgd |"))
    assert sgd_row.split("|")[-5].strip() == "—"
    assert "by wall time, scipy L-BFGS." in report


def test_starting_points_and_budgets_of_every_kind(campaign_file, tmp_path):
    """``start`` (default resolve for full batch, species for the zoo; older files' ``species_fit`` still read) and
    ``max_seconds`` reaching a mini-batch-first hybrid; each record names its start and its kinds of passes."""
    text = CAMPAIGN.split("[[optimizers]]")[0] + """
[[optimizers]]
label = "default"
name = "L-BFGS-B"
max_iter = 0
[[optimizers]]
label = "swept"
name = "L-BFGS-B"
max_iter = 0
sweep = { start = ["species", "none"] }
[[optimizers]]
label = "legacy"
name = "L-BFGS-B"
max_iter = 0
species_fit = false
[[optimizers]]
label = "zoo"
name = "adam"
epochs = 1
batch_size = 8
[[optimizers]]
label = "hybrid budget"
name = "adam+LM"
epochs = 50
batch_size = 4
max_iter = 50
max_seconds = 0
"""
    path = campaign_file.with_name("starts.toml")
    path.write_text(text.replace("seeds = [1, 2]", "seeds = [1]"))
    campaign = load_campaign(path, tmp_path / "starts")
    run_campaign(campaign, workers=1, progress=None)
    records = {(r["spec"]["optimizer"].get("label"), r["spec"]["optimizer"].get("start")): r["result"]
               for r in _records(campaign.results).values()}
    default, species, none = records["default", None], records["swept", "species"], records["swept", "none"]
    assert (default["start"], species["start"], none["start"]) == ("resolve", "species", "none")
    assert default["final_loss"] < 0.5 * species["final_loss"] and species["final_loss"] < 0.5 * none["final_loss"]
    assert records["legacy", None]["start"] == "none"
    assert records["legacy", None]["final_loss"] == none["final_loss"]
    assert records["zoo", None]["start"] == "species"
    assert default["passes_summary"] == f"{default['passes']:g} loss+gradient passes"
    hybrid = records["hybrid budget", None]
    assert hybrid["nit"] == 1 + 1 and not hybrid["success"]
    assert hybrid["message"].startswith("adam: wall-time budget of 0 s reached; LM: wall-time budget of 0 s (both")
    assert "adam: " in hybrid["passes_summary"] and "JᵀWJ builds" in hybrid["passes_summary"]
    path.write_text(text.replace('sweep = { start = ["species", "none"] }', 'start = "random"'))
    with pytest.raises(ValueError, match="start"):
        load_campaign(path)


def test_optimizers_run_on_the_models_they_name(campaign_file, tmp_path):
    """`models` restricts an optimizer entry to some [models] entries (als on the ETN only, varpro on the MTP
    only); the seeds of a full-batch trainer from an ETN's random θ₀ are not called identical."""
    import warnings

    text = campaign_file.read_text().replace("[study]", '''[models.etn]
model = "etn"
etn_max_l = 1
etn_channels = 2
etn_copies = 2
etn_ranks = 1
[[optimizers]]
name = "als"
max_iter = 1
models = ["etn"]
[[optimizers]]
name = "varpro"
max_iter = 1
init_interval = 0.1
models = ["l06"]
[study]''')
    path = tmp_path / "mixed.toml"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # als has no init_interval, but the ETN's θ₀ varies with the seed
        campaign = load_campaign(path, tmp_path / "mixed")
    pairs = {(r["optimizer"]["name"], r["model"]["name"]) for r in campaign.runs}
    assert pairs == {("adam", "l06"), ("adam", "etn"), ("L-BFGS-B", "l06"), ("L-BFGS-B", "etn"),
                     ("als", "etn"), ("varpro", "l06")}
    assert len(campaign.runs) == 2 * len(pairs)
    path.write_text(text.replace('models = ["etn"]', 'models = ["etm"]'))
    with pytest.raises(ValueError, match=r"optimizer 2: models \['etm'\] are not entries of \[models\]"):
        load_campaign(path)


def test_validate_seconds_gives_each_run_a_checked_time_to_accuracy_curve(campaign_file, tmp_path):
    from mtpfit.bench.results import ResultFileError, check_record

    text = CAMPAIGN.replace("max_iter = 4\n", "max_iter = 4\nvalidate_seconds = 1e-9\n").replace(
        "seeds = [1, 2]", "seeds = [1]").replace('name = "tiny"', 'name = "curve"')
    path = campaign_file.with_name("curve.toml")
    path.write_text(text)
    campaign = load_campaign(path, tmp_path / "curve")
    run_campaign(campaign, workers=1, progress=None)
    records = {r["spec"]["optimizer"]["name"]: r for r in _records(campaign.results).values()}
    curve = records["L-BFGS-B"]["curve"]
    assert len(curve) == records["L-BFGS-B"]["result"]["nit"]
    assert [t for t, _, _ in curve] == sorted(t for t, _, _ in curve)
    final = records["L-BFGS-B"]["result"]["errors"]["validation"]
    assert curve[-1][1:] == pytest.approx([final["epa_rmse"], final["force_rmse"]], rel=1e-12)
    assert len(records["adam"]["curve"]) == 2        # not asked for: the mini-batch default, once an epoch
    bad = dict(records["L-BFGS-B"], curve=[[-1.0, 0.1, 0.2]])
    with pytest.raises(ResultFileError, match="curve"):
        check_record(bad, campaign.result_path(bad["spec"]))
    # the report: curves against time per dataset, and the study's figures beside ours with the first time reached
    final = records["L-BFGS-B"]["curve"][-1]
    loose, tight = final[1] * 1e3 * 1.0001, final[1] * 1e3 * 0.5
    path.write_text(text + f"""published = {{ epa_mae = 2.0 }}
[study.references.loose]
epa = {loose!r}
force = {final[2] * 1.0001!r}
[study.references.tight]
epa = {tight!r}
force = 1e-9
""")
    report = write_report(campaign.results, path.parent).read_text()
    assert (campaign.results / "curve_multi20_time_to_accuracy.png").stat().st_size > 10_000
    first = next(t for t, e, f in curve if e * 1e3 <= loose and f <= final[2] * 1.0001)
    line = next(row for row in report.splitlines() if row.startswith("| scipy L-BFGS | 1 |")
                and f"{first:.0f} s (1/1 runs reach it)" in row)
    assert line
    assert "not by half the runs (0/1 reach it)" in report      # the tight reference is never reached
    mae = records["L-BFGS-B"]["result"]["errors"]["validation"]["epa_mae"] * 1e3
    assert "## Against the published potentials" in report
    assert any(row.startswith("| multi20 | l06 | scipy L-BFGS | 1 |") and f"| 2 | {mae / 2.0:.4g} |" in row
               for row in report.splitlines())


def test_the_studys_claims_are_decided_on_the_runs(campaign_file, tmp_path):
    """``[[study.claims]]``: "better" compares the cells' median final validation errors, "faster" the median time at
    which each cell's runs first reach the other cell's median final error; a claim on an absent cell is left
    undecided, and a malformed one is refused by name."""
    text = CAMPAIGN.replace("max_iter = 4\n", "max_iter = 4\nvalidate_seconds = 1e-9\n").replace(
        'name = "adam"\n', 'name = "adam"\nvalidate_seconds = 1e-9\n').replace(
        "seeds = [1, 2]", "seeds = [1]").replace('name = "tiny"', 'name = "claims"')
    claims = """
[[study.claims]]
text = "L-BFGS is more accurate than Adam."
kind = "better"
method = "scipy L-BFGS"
than = "adam"
metric = "epa"

[[study.claims]]
text = "L-BFGS reaches Adam's force error sooner."
kind = "faster"
method = "scipy L-BFGS"
than = "adam"
metric = "force"

[[study.claims]]
text = "Muon beats Adam."
kind = "better"
method = "Muon"
than = "adam"
"""
    path = campaign_file.with_name("claims.toml")
    path.write_text(text + claims)
    campaign = load_campaign(path, tmp_path / "claims")
    run_campaign(campaign, workers=1, progress=None)
    records = {r["spec"]["optimizer"]["name"]: r for r in _records(campaign.results).values()}
    lbfgs, adam = records["L-BFGS-B"], records["adam"]
    epa = [r["result"]["errors"]["validation"]["epa_rmse"] * 1e3 for r in (lbfgs, adam)]
    target = adam["result"]["errors"]["validation"]["force_rmse"]
    first = [next((t for t, _, f in r["curve"] if f <= target), float("inf")) for r in (lbfgs, adam)]
    report = write_report(campaign.results, path.parent).read_text()
    rows = [row for row in report.splitlines()
            if row.startswith("| claims | multi20 |") and row.split(" | ")[2].endswith(".")]   # the claims table
    assert len(rows) == 4 and "## The study's conclusions, one by one" in report
    best = "scipy L-BFGS" if epa[0] < epa[1] else "adam"        # the campaign's best_epa joins the table
    assert rows[0].startswith("| claims | multi20 | scipy L-BFGS is best by validation EPA RMSE. | "
                              f"best here: {best} | {'agrees' if best == 'scipy L-BFGS' else 'differs'} |")
    rows = rows[1:]
    assert f"ratio {epa[0] / epa[1]:.3g}" in rows[0]
    assert rows[0].endswith(f"| {'agrees' if epa[0] <= epa[1] else 'differs'} |")
    assert f"at a median {first[0]:.0f} s, adam at {first[1]:.0f} s" in rows[1]
    assert rows[1].endswith(f"| {'agrees' if first[0] < first[1] else 'differs'} |")
    assert "no runs of Muon" in rows[2] and rows[2].endswith("| not decided |")
    path.write_text(text + claims.replace('kind = "faster"', 'kind = "sooner"'))
    with pytest.raises(ValueError, match=r"claims\.toml: claim 2 of \[\[study\.claims\]\]: kind must be"):
        write_report(campaign.results, path.parent)
    path.write_text(text + claims + "\n[[study.claims]]\n")         # an empty claim, as from a duplicated header
    with pytest.raises(ValueError, match=r"claim 4 of \[\[study\.claims\]\]: missing text, kind, method, than"):
        load_campaign(path)
