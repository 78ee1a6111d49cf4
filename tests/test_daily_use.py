"""A user's daily loop through the command line: train on each kind of file, with the run folder that lets them
judge the fit (predictions, split, parity and loss plots, the TOML that reproduces the run), then evaluate."""
import json
import warnings
from pathlib import Path

import pytest

from mtpfit.bench import IdenticalSeedsWarning, load_campaign
from mtpfit.cli import main
from mtpfit.io import read_configurations
from mtpfit.potential.mtp import MTP

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
MULTI = DATA / "mlip2" / "level08_multi" / "train100.cfg"  # Au/Ag/Cu EMT frames, types 0, 1, 2
PNG = b"\x89PNG\r\n\x1a\n"

KINDS = {
    "extxyz": ([str(DATA / "io" / "Mo_test_3.xyz")], "extxyz"),
    "cfg with symbols": ([str(MULTI), "--species", "Au", "Ag", "Cu"], "extxyz"),
    "cfg with types": ([str(MULTI)], "cfg"),
    "deepmd": ([str(DATA / "deepmd_water")], "extxyz"),
}


def _train(argv: list, out: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # close atoms, equal compositions: checked in their own tests
        assert main(["train", "--train", *argv, "--level", "6", "--max-iter", "3", "--threads", "1",
                     "--validation-fraction", "0.34", "--output", str(out), "--quiet"]) == 0
    return json.loads((out / "metrics.json").read_text())


def _check_run_folder(out: Path, suffix: str, data) -> None:
    split = json.loads((out / "split.json").read_text())
    assert split["kind"] == "random" and split["n_configurations"] == len(data)
    held, kept = split["validation_indices"], split["train_indices"]
    assert sorted(held + kept) == list(range(len(data))) and held
    mtp = MTP.read(out / "trained.mtp").named_for(data.species())
    for part, indices in (("train", kept), ("validation", held)):
        predicted = read_configurations(out / f"predictions_{part}.{suffix}")
        assert len(predicted) == len(indices) == len(split[part])
        # the file holds the trained potential's predictions of the held-out (or kept) configurations, in order
        k = indices[-1]
        assert split[part][-1] == data[k].source
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # water's O–H pairs sit below min_dist: said in training
            expected = mtp.evaluate(data[k])
        assert predicted[-1].energy == pytest.approx(expected.energy, rel=1e-10)
        assert predicted[-1].forces == pytest.approx(expected.forces, rel=1e-8, abs=1e-10)
    for image in ("parity.png", "loss.png"):
        image = (out / image).read_bytes()
        assert image.startswith(PNG) and len(image) > 10_000


@pytest.mark.parametrize("kind", list(KINDS))
def test_train_writes_a_run_folder_for_every_kind_of_data(tmp_path, kind):
    argv, suffix = KINDS[kind]
    out = tmp_path / "run"
    _train(argv, out)
    _check_run_folder(out, suffix, read_configurations(argv[0], species=argv[2:] if "--species" in argv else None))


def test_3bpa_molecules_in_a_box(tmp_path):
    path = SHARED / "3BPA" / "train_300K.cfg"
    if not path.exists():
        pytest.skip("../shared/data/3BPA is not here (dataset-scale check; the set has no licence to ship)")
    out = tmp_path / "bpa"
    _train([str(path), "--min-dist", "0.9"], out)
    _check_run_folder(out, "cfg", read_configurations(path))
    errors = json.loads((out / "metrics.json").read_text())["errors"]["validation"]["all"]
    assert errors["stress_rmse"] is None and errors["epa_rmse"] > 0  # no stress labels: null, not NaN


def test_cfg_with_symbols_trains_names_the_potential_and_evaluates(tmp_path, capsys):
    out = tmp_path / "run"
    metrics = _train([str(MULTI), "--species", "Au", "Ag", "Cu"], out)
    assert "potential_tag = elements:Au,Ag,Cu" in (out / "trained.mtp").read_text()
    assert MTP.read(out / "trained.mtp").species == ["Au", "Ag", "Cu"]
    capsys.readouterr()
    # evaluate needs no --species: the .mtp names the .cfg types
    predictions, plot = tmp_path / "p.extxyz", tmp_path / "parity.png"
    assert main(["evaluate", str(out / "trained.mtp"), str(MULTI), "--json", "--output", str(predictions),
                 "--plot", str(plot), "--threads", "1"]) == 0
    errors = json.loads(capsys.readouterr().out)["all"]
    assert errors["n_configurations"] == 100
    assert read_configurations(predictions)[0].species.tolist()[:3] == \
        read_configurations(MULTI, species=["Au", "Ag", "Cu"])[0].species.tolist()[:3]
    assert plot.read_bytes().startswith(PNG)
    # a contradicting --species is refused, naming both lists
    assert main(["evaluate", str(out / "trained.mtp"), str(MULTI), "--species", "Cu", "Ag", "Au"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert metrics["settings"]["species"] == ["Au", "Ag", "Cu"]


def test_config_toml_reproduces_the_run(tmp_path):
    first = _train([str(MULTI), "--species", "Au", "Ag", "Cu"], tmp_path / "a")
    toml = (tmp_path / "a" / "config.toml").read_text()
    assert "species = [" in toml and "output" not in toml
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["train", "--config", str(tmp_path / "a" / "config.toml"), "--output", str(tmp_path / "b"),
                     "--quiet"]) == 0
    again = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert again["optimizer"]["final_loss"] == first["optimizer"]["final_loss"]
    assert json.loads((tmp_path / "b" / "split.json").read_text()) == \
        json.loads((tmp_path / "a" / "split.json").read_text())


def test_seeds_that_change_nothing_are_named(tmp_path):
    (tmp_path / "c.toml").write_text(f"""
name = "seeds"
seeds = [1, 2, 3]
[datasets.multi]
file = "{MULTI}"
[models.l06]
level = 6
[[optimizers]]
name = "L-BFGS-B"
[[optimizers]]
label = "random start"
name = "L-BFGS-B"
init_interval = 0.1
[[optimizers]]
name = "adam"
""")
    with pytest.warns(IdenticalSeedsWarning) as caught:
        load_campaign(tmp_path / "c.toml")
    assert len(caught) == 1
    assert "optimizer 'L-BFGS-B': the seeds [1, 2, 3] give identical runs: L-BFGS-B is deterministic and starts " \
           "from a fixed θ₀ (no init_interval)" in str(caught[0].message)
