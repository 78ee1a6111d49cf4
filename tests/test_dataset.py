"""Datasets: seeded splits, groups, species, and refusal of empty or inconsistent data."""
import numpy as np
import pytest

from conftest import DATA
from mtpfit import Configuration, Dataset
from mtpfit.io import read_cfg
from mtpfit.train import fit_species_energies


def _data():
    return Dataset(read_cfg(DATA / "mlip2" / "level08_multi" / "train100.cfg"), "train100")


def test_seeded_split_is_reproducible_and_disjoint():
    data = _data()
    train, valid = data.split(0.2, seed=7)
    again_train, again_valid = data.split(0.2, seed=7)
    other_train, _ = data.split(0.2, seed=8)
    ids = lambda d: [id(c) for c in d]  # noqa: E731
    assert ids(train) == ids(again_train) and ids(valid) == ids(again_valid)
    assert ids(train) != ids(other_train)
    assert len(valid) == 20 and len(train) == 80
    assert not set(ids(train)) & set(ids(valid))
    with pytest.raises(ValueError, match="validation_fraction"):
        data.split(1.0)


def test_empty_dataset_and_bad_configurations_raise():
    with pytest.raises(ValueError, match="nothing: the dataset is empty"):
        Dataset([], "nothing")
    with pytest.raises(ValueError, match="cfg 3: forces contain NaN"):
        Configuration(positions=np.zeros((2, 3)), species=[0, 0], forces=[[0, 0, 0], [np.nan, 0, 0]], source="cfg 3")
    with pytest.raises(ValueError, match="cfg 4: 1 species for 2 atoms"):
        Configuration(positions=np.zeros((2, 3)), species=[0], source="cfg 4")
    with pytest.raises(ValueError, match="periodic along a zero cell vector"):
        Configuration(positions=np.zeros((1, 3)), species=[0], cell=np.diag([3.0, 3.0, 0.0]), pbc=[True] * 3)


def test_species_groups_and_species_fit():
    from mtpfit import MTP, Objective

    data = _data()[:20]
    for k, c in enumerate(data):
        c.group = "a" if k < 5 else "b"
    assert data.species() == [0, 1, 2] and data.groups() == ["a", "b"]
    mtp = MTP.from_level(6, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    obj = Objective(mtp, data)
    x = fit_species_energies(obj, mtp.theta)
    counts = np.array([np.bincount(c.species, minlength=3) for c in data])
    energies = obj.predict(x).energies
    # the fitted ξ make the residuals orthogonal to the composition columns (normal equations)
    residual = np.array([c.energy for c in data]) - energies
    assert np.allclose(counts.T @ residual, 0.0, atol=1e-8 * np.abs(energies).sum())
    assert np.array_equal(x[mtp.blocks["radial"]], mtp.theta[mtp.blocks["radial"]])


def test_fingerprint_follows_the_data():
    data = _data()
    assert data.fingerprint() == _data().fingerprint()
    changed = _data()
    changed[3].energy += 1e-9
    assert changed.fingerprint() != data.fingerprint()
    assert data.subset(range(10)).fingerprint() != data.fingerprint()
