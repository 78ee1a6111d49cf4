"""Tests of mtpfit.io.deepmd: DeePMD-kit ``deepmd/npy`` folders read through dpdata.

tests/data/deepmd_water/data_0 is the first 5 frames of the DeePMD-kit water example
(see SOURCE.txt there); the other systems are written here with numpy.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from conftest import shared_path

from mtpfit.io import FormatError, read_ase, read_configurations, read_deepmd

WATER = Path(__file__).parent / "data" / "deepmd_water"
WATER_0 = WATER / "data_0"

CELL = np.array([[4.0, 0.0, 0.0], [0.5, 5.0, 0.0], [0.2, 0.3, 6.0]])
# symmetric, with distinct off-diagonal values so that a Voigt or sign mix-up shows
VIRIAL = np.array([[1.5, 0.2, -0.3], [0.2, -2.0, 0.4], [-0.3, 0.4, 3.0]])


def write_system(folder: Path, n_frames: int = 3, types=(0, 1, 1), type_map=("O", "H"),
                 set_sizes: tuple[int, ...] | None = None, virial: bool = True,
                 nopbc: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a deepmd/npy system with random labels; return the arrays written (all frames)."""
    rng = np.random.default_rng(seed)
    n = len(types)
    arrays = {
        "coord": rng.uniform(0.0, 3.0, (n_frames, 3 * n)),
        "box": np.tile(CELL.reshape(9), (n_frames, 1)),
        "energy": rng.uniform(-10.0, -5.0, n_frames),
        "force": rng.normal(size=(n_frames, 3 * n)),
    }
    if virial:
        arrays["virial"] = np.stack([(k + 1) * VIRIAL.reshape(9) for k in range(n_frames)])
    if nopbc:
        del arrays["box"]
    folder.mkdir(parents=True)
    np.savetxt(folder / "type.raw", np.array(types), fmt="%d")
    if type_map is not None:
        (folder / "type_map.raw").write_text("\n".join(type_map) + "\n")
    if nopbc:
        (folder / "nopbc").write_text("")
    bounds = np.cumsum((0,) + (set_sizes or (n_frames,)))
    for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        (folder / f"set.{s:03d}").mkdir()
        for key, value in arrays.items():
            np.save(folder / f"set.{s:03d}" / f"{key}.npy", value[a:b])
    return arrays


def test_water_excerpt_frames_atoms_species():
    configurations = read_deepmd(WATER_0)
    types = np.loadtxt(WATER_0 / "type.raw", dtype=int)
    assert len(configurations) == 5
    for k, c in enumerate(configurations):
        assert c.n_atoms == 192
        assert list(c.species) == [("O", "H")[t] for t in types]
        assert c.group == "data_0"
        assert c.source == f"{WATER_0}, frame {k}"
        assert c.pbc.all() and c.plus_stress is None
    assert (configurations[0].species == "O").sum() == 64
    assert (configurations[0].species == "H").sum() == 128


def test_water_excerpt_labels_equal_the_arrays():
    configurations = read_deepmd(WATER_0)
    arrays = {key: np.load(WATER_0 / "set.000" / f"{key}.npy") for key in ("box", "coord", "energy", "force")}
    for k, c in enumerate(configurations):
        np.testing.assert_array_equal(c.positions, arrays["coord"][k].reshape(-1, 3))
        np.testing.assert_array_equal(c.cell, arrays["box"][k].reshape(3, 3))
        assert c.energy == float(arrays["energy"][k])
        np.testing.assert_array_equal(c.forces, arrays["force"][k].reshape(-1, 3))


def test_virial_is_plus_stress(tmp_path):
    # MTP_SPEC §5: PlusStress S = -σ V with ASE's stress σ; DeePMD-kit's virial W has
    # σ = -W / V (dpdata's ASE export), so S = W, and frame k was written as (k + 1) W.
    write_system(tmp_path / "sys", n_frames=2)
    configurations = read_deepmd(tmp_path / "sys")
    for k, c in enumerate(configurations):
        np.testing.assert_allclose(c.plus_stress, (k + 1) * VIRIAL, rtol=1e-15)


def test_virial_agrees_with_the_ase_reader(tmp_path):
    arrays = write_system(tmp_path / "sys", n_frames=1)
    (c,) = read_deepmd(tmp_path / "sys")
    sigma = -VIRIAL / abs(np.linalg.det(CELL))
    atoms = Atoms(symbols=["O", "H", "H"], positions=arrays["coord"][0].reshape(-1, 3), cell=CELL, pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=float(arrays["energy"][0]),
                                       forces=arrays["force"][0].reshape(-1, 3),
                                       stress=sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
    write(tmp_path / "same.extxyz", atoms)
    (via_ase,) = read_ase(tmp_path / "same.extxyz")
    np.testing.assert_allclose(c.plus_stress, via_ase.plus_stress, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c.positions, via_ase.positions, atol=1e-8)  # extxyz keeps 8 decimals
    assert c.energy == pytest.approx(via_ase.energy, rel=1e-14)


def test_sets_are_concatenated_in_order(tmp_path):
    arrays = write_system(tmp_path / "sys", n_frames=5, set_sizes=(3, 2))
    configurations = read_deepmd(tmp_path / "sys")
    assert [c.energy for c in configurations] == list(arrays["energy"])
    assert configurations[4].source == f"{tmp_path / 'sys'}, frame 4"


def test_nopbc_is_a_molecule(tmp_path):
    write_system(tmp_path / "mol", nopbc=True, virial=False)
    c = read_deepmd(tmp_path / "mol")[0]
    assert c.cell is None and not c.pbc.any() and c.volume is None


def test_without_type_map_the_species_are_the_integer_types(tmp_path):
    write_system(tmp_path / "sys", types=(1, 0, 1), type_map=None)
    assert read_deepmd(tmp_path / "sys")[0].species.tolist() == [1, 0, 1]


def test_every_system_of_a_folder_in_name_order(tmp_path):
    root = tmp_path / "root"
    write_system(root / "b", n_frames=2, seed=1)
    write_system(root / "a" / "nested", n_frames=3, types=(0, 0), type_map=("Cu",), seed=2)
    shutil.copytree(WATER_0, root / "c")
    configurations = read_deepmd(root)
    assert [c.group for c in configurations] == ["a/nested"] * 3 + ["b"] * 2 + ["c"] * 5
    assert [c.n_atoms for c in configurations] == [2] * 3 + [3] * 2 + [192] * 5
    assert configurations[0].species.tolist() == ["Cu", "Cu"]


def test_read_configurations_recognises_the_folder(tmp_path):
    data = read_configurations(WATER)  # holds data_0, LICENSE and SOURCE.txt
    assert len(data) == 5 and data.name == "deepmd_water"
    assert read_configurations(WATER_0, format="deepmd")[2].energy == read_deepmd(WATER_0)[2].energy
    with pytest.raises(IsADirectoryError, match="deepmd"):
        read_configurations(WATER_0, format="cfg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no type.raw") as err:
        read_configurations(tmp_path / "empty")
    assert err.value.path == str(tmp_path / "empty")


def _remove(name):
    return lambda folder: (folder / name).unlink()


def _save(name, array):
    return lambda folder: np.save(folder / name, array)


MALFORMED = {
    "set without coord.npy": (_remove("set.000/coord.npy"), "set.000 has no coord.npy"),
    "set without energy.npy": (_remove("set.000/energy.npy"), "set.000 has no energy.npy"),
    "no set folder": (lambda f: shutil.rmtree(f / "set.000"), "no set"),
    "energy frames disagree": (_save("set.000/energy.npy", np.zeros(4)), "energies"),
    "coord atoms disagree": (_save("set.000/coord.npy", np.zeros((3, 12))), "coords"),
    "force not 3 per atom": (_save("set.000/force.npy", np.zeros((3, 10))), "reshape"),
    "virial not 9 per frame": (_save("set.000/virial.npy", np.zeros((3, 8))), "reshape"),
    "type without a name": (lambda f: (f / "type_map.raw").write_text("O\n"), "atom_numbs"),
    "not an npy file": (lambda f: (f / "set.000" / "box.npy").write_text("hello"), "box|pickled"),
    "NaN force": (_save("set.000/force.npy", np.full((3, 9), np.nan)), "configuration 0: forces contain NaN"),
    "zero box vector": (_save("set.000/box.npy", np.zeros((3, 9))), "configuration 0: periodic along a zero"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_system_names_the_folder(tmp_path, case):
    mutate, message = MALFORMED[case]
    folder = tmp_path / "sys"
    write_system(folder)
    mutate(folder)
    with pytest.raises(FormatError, match=message) as err:
        read_deepmd(tmp_path)
    assert err.value.path == str(folder)
    assert str(err.value).startswith(str(folder))


def test_missing_type_raw_is_no_system(tmp_path):
    write_system(tmp_path / "sys")
    (tmp_path / "sys" / "type.raw").unlink()
    with pytest.raises(FormatError, match="no type.raw") as err:
        read_deepmd(tmp_path / "sys")
    assert err.value.path == str(tmp_path / "sys")


def test_a_file_or_nothing_is_refused(tmp_path):
    with pytest.raises(FormatError, match="not a folder"):
        read_deepmd(WATER / "SOURCE.txt")
    with pytest.raises(FileNotFoundError):
        read_deepmd(tmp_path / "absent")


def test_without_dpdata_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dpdata", None)  # makes `import dpdata` raise ImportError
    with pytest.raises(ModuleNotFoundError, match=r'pip install "mtpfit\[deepmd\]"'):
        read_deepmd(WATER_0)


def test_shared_water_set():
    root = shared_path("data", "water", "examples", "water", "data")
    configurations = read_configurations(root)
    frames = sum(len(np.load(f)) for f in root.glob("*/set.*/energy.npy"))
    assert len(configurations) == frames == 400
    assert {c.n_atoms for c in configurations} == {192}
    groups = [c.group for c in configurations]
    assert groups == sorted(groups) and set(groups) == {"data_0", "data_1", "data_2", "data_3"}
    assert groups.count("data_1") == 160  # its two sets, 80 frames each


def test_dataset_read_from_the_current_folder_is_named_after_it(monkeypatch):
    monkeypatch.chdir(Path(__file__).parent / "data" / "deepmd_water")
    assert read_configurations(".").name == "deepmd_water"
