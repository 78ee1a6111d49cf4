"""Error metrics reproduce the reference program's own error report."""
import re

import numpy as np
import pytest

from conftest import DATA
from mtpfit import MTP, Dataset, Objective
from mtpfit.io import read_cfg
from mtpfit.metrics import MissingLabelWarning, error_metrics, format_errors

LEVEL08 = DATA / "mlip2" / "level08_multi"


def _mlip_report(log: str, section: str) -> dict[str, float]:
    """Numbers of one block ('Energy per atom:', 'Forces:', 'Stresses (in eV):') of MLIP-2's TRAIN ERRORS."""
    train = log.split("TRAIN ERRORS")[1].split("VALIDATION ERRORS")[0]
    block = train.split(section)[1].split("\n\n")[0]
    return {key: float(value) for key, value in re.findall(r"(Maximal|Average|RMS)\s+absolute difference = (\S+)", block)}


def test_metrics_reproduce_mlip2_train_report():
    """pot.mtp was trained by MLIP-2 on these 100 frames; its log prints the train errors to 6 digits."""
    data = Dataset(read_cfg(LEVEL08 / "train100.cfg"))
    mtp = MTP.read(LEVEL08 / "pot.mtp")
    m = error_metrics(data, Objective(mtp, data).predict())["all"]
    log = (LEVEL08 / "train_stdout.log").read_text()
    epa = _mlip_report(log, "Energy per atom:")
    forces = _mlip_report(log, "Forces:")
    stress = _mlip_report(log, "Stresses (in eV):")
    assert m["epa_mae"] == pytest.approx(epa["Average"], rel=1e-5)
    assert m["epa_rmse"] == pytest.approx(epa["RMS"], rel=1e-5)
    assert m["force_rmse"] == pytest.approx(forces["RMS"], rel=1e-5)
    assert m["force_mae_mlip"] == pytest.approx(forces["Average"], rel=1e-5)
    assert m["force_rmse_vector"] == pytest.approx(np.sqrt(3) * forces["RMS"], rel=1e-5)
    assert m["stress_rmse_component"] == pytest.approx(stress["RMS"], rel=1e-5)
    assert m["n_configurations"] == 100 and m["n_atoms"] == 2700


def test_groups_and_masks():
    data = Dataset(read_cfg(LEVEL08 / "ref10.cfg"))
    for k, c in enumerate(data):
        c.group = "even" if k % 2 == 0 else "odd"
    data[0].force_mask = np.zeros(data[0].n_atoms, bool)
    mtp = MTP.read(LEVEL08 / "pot.mtp")
    pred = Objective(mtp, data).predict()
    # configuration 0 has its forces masked out: the force errors are over the other nine, and said to be
    with pytest.warns(MissingLabelWarning, match=r"1 of 10 configurations have no force labels .*configuration 0"):
        errors = error_metrics(data, pred)
    assert set(errors) == {"all", "even", "odd"}
    assert errors["even"]["n_configurations"] == 5
    assert errors["all"]["n_forces"] == data.n_atoms - data[0].n_atoms
    odd = [k for k in range(10) if k % 2]
    epa = np.array([(pred.energies[k] - data[k].energy) / data[k].n_atoms for k in odd])
    assert errors["odd"]["epa_rmse"] == pytest.approx(np.sqrt(np.mean(epa ** 2)), rel=1e-12)
    table = format_errors(errors, "title")
    assert "even" in table and "meV/atom" in table
