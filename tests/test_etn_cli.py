"""`mtpfit train --model etn` and `mtpfit evaluate` of its trained.etn.json; the ETN settings' validation."""
import csv
import json

import pytest

from conftest import DATA
from mtpfit import Objective, TrainingConfig
from mtpfit.cli import main
from mtpfit.io import read_files
from mtpfit.metrics import error_metrics
from mtpfit.potential import ETN

REF10 = DATA / "mlip2" / "level08_multi" / "ref10.cfg"
SPECIES = ["Au", "Ag", "Cu"]
# ref10's compositions are all 7:7:13: the species fit warns that only their weighted sum is determined
pytestmark = pytest.mark.filterwarnings("ignore::mtpfit.train.initial.UnderdeterminedSpeciesWarning")
SHAPE = ["--model", "etn", "--etn-max-l", "1", "--etn-channels", "2", "--etn-ranks", "2", "--radial-basis-size", "4",
         "--train", str(REF10), "--species", *SPECIES, "--threads", "2"]


@pytest.mark.parametrize("optimizer", [["--optimizer", "als", "--max-iter", "3"],
                                       ["--optimizer", "adam", "--epochs", "3", "--batch-size", "3"]],
                         ids=["als", "adam"])
def test_train_writes_an_etn_run_that_reads_back(tmp_path, capsys, optimizer):
    out = tmp_path / "run"
    assert main(["train", *SHAPE, *optimizer, "--output", str(out)]) == 0
    capsys.readouterr()
    assert not (out / "trained.mtp").exists()
    etn = ETN.read(out / "trained.etn.json")
    assert etn.species == SPECIES and etn.hyperparameters["ranks"] == [2, 2] and etn.hyperparameters["max_l"] == 1
    metrics = json.loads((out / "metrics.json").read_text())
    split = json.loads((out / "split.json").read_text())
    validation = read_files([REF10], species=SPECIES).subset(split["validation_indices"])
    errors = error_metrics(validation, Objective(etn, validation).predict())["all"]
    for key in ("epa_rmse", "force_rmse"):
        assert errors[key] == pytest.approx(metrics["errors"]["validation"]["all"][key], rel=1e-10)
    if optimizer[1] == "als":
        losses = [float(row["loss"]) for row in csv.DictReader(open(out / "history.csv"))]
        assert metrics["optimizer"]["nit"] == len(losses) == 3 and losses == sorted(losses, reverse=True)
    assert main(["evaluate", str(out / "trained.etn.json"), str(REF10), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["all"]["n_configurations"] == 10


@pytest.mark.parametrize("settings, message", [
    (dict(model="etn", optimizer="varpro"), "linear system"),
    (dict(model="etn", optimizer="adam+native-bfgs"), "linear system"),
    (dict(optimizer="als"), "--model etn"),
    (dict(etn_channels=3), "etn_channels"),
    (dict(model="etn", etn_copies=3, etn_ranks=[2, 3, 4]), "etn_copies - 1"),
    (dict(model="etn", etn_ranks=0), "etn_ranks"),
    (dict(model="etn", etn_max_l=11), "etn_max_l"),
    (dict(model="etn", optimizer="LM", start="resolve"), "resolve"),
    (dict(model="tt"), "model"),
])
def test_etn_settings_are_checked_before_any_data_is_read(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(output=None, **settings)


def test_each_model_has_its_default_trainer():
    """Without --optimizer an ETN trains with Adam and an MTP with varpro (DEFAULT_TRAINERS)."""
    assert TrainingConfig(model="etn", output=None).optimizer == "adam"
    assert TrainingConfig(output=None).optimizer == "varpro"


def test_the_default_start_of_an_etn_is_the_species_fit():
    assert TrainingConfig(model="etn", optimizer="LM", output=None).starting == "species"
    assert TrainingConfig(optimizer="LM", output=None).starting == "resolve"


def test_a_campaign_model_entry_sets_an_etn():
    from mtpfit.bench.runner import training_config
    from mtpfit.io import read_files

    data = read_files([REF10], species=SPECIES)
    spec = {"optimizer": {"name": "als", "max_iter": 2}, "model": {"name": "tiny", "model": "etn", "etn_max_l": 1,
                                                                  "etn_ranks": [2, 3], "max_dist": 4.5},
            "loss": {}, "dataset": {"species": SPECIES}, "seed": 1}
    config = training_config(spec, data, data)
    assert (config.model, config.etn_max_l, config.etn_ranks, config.max_dist) == ("etn", 1, [2, 3], 4.5)
    assert config.starting == "species"
    spec["model"] = {"name": "l08", "level": 8}
    with pytest.raises(ValueError, match="--model etn"):
        training_config(spec, data, data)
