"""Dataset-scale conformance: published MTPs evaluated on their benchmark test sets (reads ../shared)."""
import pytest

from conftest import shared_path
from mtpfit import MTP, Dataset, Objective
from mtpfit.io import read_mlearn_json
from mtpfit.metrics import error_metrics

# MLIP-2's own evaluation of the mlearn potentials on the test sets (BENCHMARKS.md §3), meV/atom
REFERENCE_EPA = {"Mo": (2.938, 3.978), "Si": (2.313, 3.026)}


@pytest.mark.parametrize("element", sorted(REFERENCE_EPA))
def test_mlearn_fitted_potentials_reproduce_reference_epa(element):
    mtp = MTP.read(shared_path("data", "mlearn", "mtp_fitted", element, "fitted.mtp"), species=[element])
    test = Dataset(read_mlearn_json(shared_path("data", "mlearn", "json", element, "test.json")))
    m = error_metrics(test, Objective(mtp, test).predict())["all"]
    mae, rmse = REFERENCE_EPA[element]
    assert 1e3 * m["epa_mae"] == pytest.approx(mae, abs=0.01)
    assert 1e3 * m["epa_rmse"] == pytest.approx(rmse, abs=0.01)


def test_quaternary_mtp_evaluates_monbtaw_test_groups():
    """The published 4-species MTP (Yin et al. 2021; types 0..3 = Nb, Mo, Ta, W) on every *_Test group."""
    folder = shared_path("data", "MoNbTaW", "training")
    mtp = MTP.read(shared_path("data", "MoNbTaW", "mtp.2021.08", "quaternary.mtp"), species=["Nb", "Mo", "Ta", "W"])
    configs = []
    for path in sorted(folder.glob("*_Test.json")):
        for c in read_mlearn_json(path):
            c.group = path.stem
            configs.append(c)
    test = Dataset(configs, "MoNbTaW tests")
    errors = error_metrics(test, Objective(mtp, test).predict())
    assert len(errors) == 1 + len(list(folder.glob("*_Test.json")))
    for group, m in errors.items():
        # an MTP of this kind is accurate to a few meV/atom and a few tenths of eV/Å on its own test data
        assert 1e3 * m["epa_rmse"] < 30, group
        assert m["force_rmse"] < 0.5, group
    print({g: (round(1e3 * m["epa_rmse"], 2), round(m["force_rmse"], 3)) for g, m in errors.items()})
