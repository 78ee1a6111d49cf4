"""Tests of mtpfit.io: .cfg, mlearn/study JSON and ASE readers, the .cfg writer, dispatch.

Expected numbers are copied by hand from the excerpts in tests/data/io (see README.md there).
"""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mtpfit.data.configuration import Configuration
from mtpfit.io import (FormatError, read_ase, read_cfg, read_configurations, read_mlearn_json,
                       read_study_json, write_cfg)
from mtpfit.io.json_formats import VASP_STRESS_ORDER, StressOrderWarning

DATA = Path(__file__).parent / "data" / "io"
SHARED = Path(__file__).parents[1].parent / "shared"
KBAR = 1602.1766208  # kBar per eV/Å³
# The stress order of the mlearn Mo file (xz and yz swapped against VASP's), which its sheared cells reveal.
MO_ORDER = "xx yy zz xy xz yz"


def assert_bitwise(a, b):
    """Equal shape, dtype and bits (distinguishes -0.0 from 0.0, unlike array_equal)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------- .cfg reading

def test_read_cfg_crystals():
    configs = read_cfg(DATA / "crystals_multi_3.cfg")
    assert len(configs) == 3
    c = configs[1]
    assert c.n_atoms == 27
    assert c.species.dtype.kind == "i" and c.species[:4].tolist() == [0, 1, 2, 2]
    np.testing.assert_array_equal(c.cell, [[0, 5.415, 5.415], [5.415, 0, 5.415],
                                           [5.415, 5.415, 0]])
    assert c.pbc.tolist() == [True, True, True]
    assert c.positions[0].tolist() == [0.002399, -0.010685, 0.006978]
    assert c.forces[0].tolist() == [-1.352864, 0.324360, -1.343426]
    assert c.energy == 7.422333048575
    # PlusStress:  xx yy zz yz xz xy = 79.43794 75.09974 79.52274 -0.50184 -4.67947 -0.36394
    np.testing.assert_array_equal(c.plus_stress, [[79.43794, -0.36394, -4.67947],
                                                  [-0.36394, 75.09974, -0.50184],
                                                  [-4.67947, -0.50184, 79.52274]])
    assert c.source.endswith("crystals_multi_3.cfg, configuration 1 (line 42)")
    assert c.group is None and c.features == {}


def test_read_cfg_molecule():
    (c,) = read_cfg(DATA / "methane_1.cfg")
    assert c.cell is None and not c.pbc.any()
    assert c.species.tolist() == [0, 1, 1, 1, 1]
    assert c.positions[3].tolist() == [0.883595, 0.357298, 0.512510]
    assert c.energy == -113.613482929307
    assert c.plus_stress is None


def test_read_cfg_tolerates_crlf_and_blank_lines(tmp_path):
    text = (DATA / "crystals_multi_3.cfg").read_text()
    messy = tmp_path / "messy.cfg"
    messy.write_bytes(("\n\n" + text.replace("END_CFG\n", "END_CFG\n\n\n")
                       .replace(" Energy\n", "\n Energy\n")).replace("\n", "\r\n").encode())
    for a, b in zip(read_cfg(messy), read_cfg(DATA / "crystals_multi_3.cfg"), strict=True):
        assert_bitwise(a.positions, b.positions)
        assert_bitwise(a.forces, b.forces)
        assert_bitwise(a.plus_stress, b.plus_stress)
        assert a.energy == b.energy


def test_read_cfg_direct_coordinates_features_partial_cell(tmp_path):
    path = tmp_path / "direct.cfg"
    path.write_text(
        "BEGIN_CFG\n Size\n 2\n Supercell\n 2.0 0.0 0.0\n 1.0 3.0 0.0\n 0.0 0.5 4.0\n"
        " AtomData: type direct_x direct_y direct_z\n 1 0.5 0.25 0.1\n 0 0.0 0.0 0.0\n"
        " Feature   EFS_by  VASP  PBE\n Feature config_type bcc\nEND_CFG\n"
        "BEGIN_CFG\n Size\n 1\n Supercell\n 3.0 0.0 0.0\n 0.0 4.0 0.0\n"
        " AtomData: cartes_x cartes_y cartes_z\n 0.1 0.2 0.3\nEND_CFG\n")
    slab, wire = read_cfg(path)
    # 0.5 a + 0.25 b + 0.1 c with a=(2,0,0), b=(1,3,0), c=(0,0.5,4)
    np.testing.assert_allclose(slab.positions, [[1.25, 0.8, 0.4], [0.0, 0.0, 0.0]],
                               rtol=0, atol=1e-15)
    assert slab.species.tolist() == [1, 0]
    assert slab.features == {"EFS_by": "VASP  PBE", "config_type": "bcc"}
    assert slab.group == "bcc"
    assert slab.forces is None and slab.energy is None
    np.testing.assert_array_equal(wire.cell, [[3, 0, 0], [0, 4, 0], [0, 0, 0]])
    assert wire.pbc.tolist() == [True, True, False]
    assert wire.species.tolist() == [0]


# ----------------------------------------------------------------------------- .cfg errors

GOOD = ["BEGIN_CFG", " Size", "  1", " AtomData: id type cartes_x cartes_y cartes_z",
        "  1 0 0.0 0.0 0.0", "END_CFG"]
ATOMS = " AtomData: id type cartes_x cartes_y cartes_z fx fy fz"

# (block after a valid 6-line configuration, 1-based line of the error inside the block,
#  a fragment of the message)
MALFORMED = {
    "no Size": (["BEGIN_CFG", " Energy", " 1.0", "END_CFG"], 1, "without Size"),
    "AtomData before Size": (["BEGIN_CFG", ATOMS, " 1 0 0 0 0 0 0 0", "END_CFG"], 2, "Size"),
    "Size zero": (["BEGIN_CFG", " Size", " 0", "END_CFG"], 3, "positive integer"),
    "Size not int": (["BEGIN_CFG", " Size", " 2.5", "END_CFG"], 3, "positive integer"),
    "Size text": (["BEGIN_CFG", " Size", " two", "END_CFG"], 3, "positive integer"),
    "Size without value": (["BEGIN_CFG", " Size", " Energy", " 1.0", "END_CFG"], 2, "Size"),
    "fewer atoms": (["BEGIN_CFG", " Size", " 3", ATOMS, " 1 0 0 0 0 0 0 0",
                     " 2 0 1 0 0 0 0 0", " Energy", " 1.0", "END_CFG"], 7, "2 atom lines"),
    "fewer atoms at end of file": (["BEGIN_CFG", " Size", " 2", ATOMS, " 1 0 0 0 0 0 0 0"], 5,
                                   "1 atom lines"),
    "more atoms": (["BEGIN_CFG", " Size", " 1", ATOMS, " 1 0 0 0 0 0 0 0",
                    " 2 0 1 0 0 0 0 0", "END_CFG"], 6, "more atom lines"),
    "short atom line": (["BEGIN_CFG", " Size", " 1", ATOMS, " 1 0 0 0 0 0 0", "END_CFG"], 5,
                        "expected 8 values"),
    "non-numeric position": (["BEGIN_CFG", " Size", " 1", ATOMS, " 1 0 0 x 0 0 0 0",
                              "END_CFG"], 5, "not a number"),
    "NaN force": (["BEGIN_CFG", " Size", " 1", ATOMS, " 1 0 0 0 0 0 nan 0", "END_CFG"], 5,
                  "not finite"),
    "inf energy": (["BEGIN_CFG", " Size", " 1", ATOMS, " 1 0 0 0 0 0 0 0", " Energy",
                    " -inf", "END_CFG"], 7, "not finite"),
    "non-numeric stress": (["BEGIN_CFG", " Size", " 1", ATOMS, " 1 0 0 0 0 0 0 0",
                            " PlusStress: xx yy zz yz xz xy", " 1 2 3 4 5 six", "END_CFG"], 7,
                           "not a number"),
    "NaN cell": (["BEGIN_CFG", " Size", " 1", " Supercell", " 1 0 0", " 0 nan 0", " 0 0 1",
                  ATOMS, " 1 0 0 0 0 0 0 0", "END_CFG"], 6, "not finite"),
    "missing coordinate column": (["BEGIN_CFG", " Size", " 1",
                                   " AtomData: id type cartes_x cartes_y", " 1 0 0 0",
                                   "END_CFG"], 4, "cartes_x cartes_y cartes_z"),
    "column that is not a name": (["BEGIN_CFG", " Size", " 1", ATOMS + " 2nd",
                                   " 1 0 0 0 0 0 0 0 0", "END_CFG"], 4, "'2nd' are not names"),
    "repeated extra column": (["BEGIN_CFG", " Size", " 1", ATOMS + " nbh_grades nbh_grades",
                               " 1 0 0 0 0 0 0 0 1 1", "END_CFG"], 4, "repeated AtomData column(s) nbh_grades"),
    "non-numeric extra column": (["BEGIN_CFG", " Size", " 1", ATOMS + " nbh_grades",
                                  " 1 0 0 0 0 0 0 0 high", "END_CFG"], 5, "nbh_grades: 'high' is not a number"),
    "NaN extra column": (["BEGIN_CFG", " Size", " 1", ATOMS + " charge",
                          " 1 0 0 0 0 0 0 0 nan", "END_CFG"], 5, "charge: 'nan' is not finite"),
    "two forces only": (["BEGIN_CFG", " Size", " 1",
                         " AtomData: id type cartes_x cartes_y cartes_z fx fy",
                         " 1 0 0 0 0 0 0", "END_CFG"], 4, "fx fy fz"),
    "negative type": (["BEGIN_CFG", " Size", " 1", ATOMS, " 1 -1 0 0 0 0 0 0", "END_CFG"], 5,
                      "non-negative"),
    "direct without cell": (["BEGIN_CFG", " Size", " 1",
                             " AtomData: id type direct_x direct_y direct_z", " 1 0 0 0 0",
                             "END_CFG"], 4, "direct coordinates"),
    "no END_CFG at end of file": (["BEGIN_CFG", " Size", " 1", ATOMS, " 1 0 0 0 0 0 0 0"], 1,
                                  "BEGIN_CFG without END_CFG"),
    "BEGIN_CFG inside a configuration": (["BEGIN_CFG", " Size", " 1", ATOMS,
                                          " 1 0 0 0 0 0 0 0", "BEGIN_CFG", " Size", " 1",
                                          ATOMS, " 1 0 0 0 0 0 0 0", "END_CFG"], 1,
                                         "BEGIN_CFG without END_CFG"),
    "unknown keyword": (["BEGIN_CFG", " Size", " 1", ATOMS, " 1 0 0 0 0 0 0 0",
                         " EnergyWeight", " 1", "END_CFG"], 6, "unknown keyword"),
    "repeated Energy": (["BEGIN_CFG", " Size", " 1", ATOMS, " 1 0 0 0 0 0 0 0", " Energy",
                         " 1", " Energy", " 2", "END_CFG"], 8, "twice"),
    "text between configurations": (["garbage"], 1, "expected BEGIN_CFG"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_read_cfg_malformed(tmp_path, case):
    block, line, fragment = MALFORMED[case]
    path = tmp_path / "bad_input.cfg"
    path.write_text("\n".join(GOOD + block) + "\n")
    with pytest.raises(FormatError) as info:
        read_cfg(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{len(GOOD) + line}: "), message
    assert fragment in message
    assert info.value.line == len(GOOD) + line


@pytest.mark.parametrize("text", ["", "\n  \n\r\n"])
def test_read_cfg_empty_file(tmp_path, text):
    path = tmp_path / "empty_input.cfg"
    path.write_text(text)
    with pytest.raises(FormatError, match="empty_input.cfg: no configuration"):
        read_cfg(path)


# ----------------------------------------------------------------------------- .cfg writing

def _random_configurations() -> list[Configuration]:
    rng = np.random.default_rng(7)
    awkward = np.array([-0.0, 1e-300, -2.5e-310, 1.2345678901234567e20, 0.1, 1 / 3])
    crystal = Configuration(
        positions=np.concatenate([rng.normal(size=(4, 3)) * 3, awkward.reshape(2, 3)]),
        species=np.array([0, 2, 1, 0, 3, 1]), cell=rng.normal(size=(3, 3)) + 5 * np.eye(3),
        energy=rng.normal() * 100, forces=rng.normal(size=(6, 3)),
        plus_stress=(lambda s: s + s.T)(rng.normal(size=(3, 3))),
        features={"EFS_by": "VASP PBE", "note": "x"}, group="bulk",
        atom_data={"nbh_grades": rng.uniform(0, 3, 6), "charge": awkward})
    molecule = Configuration(positions=rng.normal(size=(3, 3)), species=np.array([1, 0, 0]),
                             energy=-1.0 / 7, forces=rng.normal(size=(3, 3)))
    unlabelled = Configuration(positions=rng.normal(size=(2, 3)), species=np.array([0, 0]),
                               cell=np.diag(rng.uniform(3, 4, 3)), features={"id": "17"})
    return [crystal, molecule, unlabelled]


def test_write_read_cfg_is_bit_exact(tmp_path):
    originals = _random_configurations() + read_cfg(DATA / "crystals_multi_3.cfg")
    path = tmp_path / "round_trip.cfg"
    write_cfg(path, originals)
    copies = read_cfg(path)
    assert len(copies) == len(originals)
    for a, b in zip(originals, copies):
        assert_bitwise(a.positions, b.positions)
        assert_bitwise(a.species.astype(np.int64), b.species)
        assert a.pbc.tolist() == b.pbc.tolist()
        for name in ("cell", "forces", "plus_stress"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None), name
            if x is not None:
                assert_bitwise(x, y)
        assert (a.energy is None) == (b.energy is None)
        if a.energy is not None:
            assert_bitwise(np.float64(a.energy), np.float64(b.energy))
        assert b.group == a.group
        assert list(b.atom_data) == list(a.atom_data)
        for name in a.atom_data:
            assert_bitwise(a.atom_data[name], b.atom_data[name])
    assert copies[0].features == {"EFS_by": "VASP PBE", "note": "x", "config_type": "bulk"}
    assert copies[2].features == {"id": "17"} and copies[2].group is None
    # a second write of what was read is byte-identical: nothing drifts
    write_cfg(tmp_path / "again.cfg", copies)
    assert (tmp_path / "again.cfg").read_bytes() == path.read_bytes()


def test_read_cfg_keeps_extra_atom_columns(tmp_path):
    """MLIP's per-atom extrapolation grades (``mlp calc-grade`` and the LAMMPS interface of MLIP-3 write them so)
    and any other named column are kept as per-atom data, in the file's order."""
    path = tmp_path / "graded.cfg"
    path.write_text("BEGIN_CFG\n Size\n    2\n Supercell\n 3.0 0 0\n 0 3.0 0\n 0 0 3.0\n"
                    " AtomData:  id type cartes_x cartes_y cartes_z fx fy fz nbh_grades magmom_x\n"
                    "  1 0 0.0 0.0 0.0 0.1 0.2 0.3 1.25 0\n  2 0 1.5 1.5 1.5 -0.1 -0.2 -0.3 3.5e-1 -2\n"
                    " Energy\n  -7.5\n Feature   MV_grade  1.25\nEND_CFG\n")
    (c,) = read_cfg(path)
    assert list(c.atom_data) == ["nbh_grades", "magmom_x"]
    assert c.atom_data["nbh_grades"].tolist() == [1.25, 0.35] and c.atom_data["magmom_x"].tolist() == [0.0, -2.0]
    assert c.forces[1].tolist() == [-0.1, -0.2, -0.3] and c.features == {"MV_grade": "1.25"}
    write_cfg(tmp_path / "again.cfg", c)
    header = next(line for line in (tmp_path / "again.cfg").read_text().splitlines() if "AtomData" in line)
    assert header.split() == ["AtomData:", "id", "type", "cartes_x", "cartes_y", "cartes_z", "fx", "fy", "fz",
                              "nbh_grades", "magmom_x"]
    assert read_cfg(tmp_path / "again.cfg")[0].atom_data["nbh_grades"].tolist() == [1.25, 0.35]


@pytest.mark.parametrize("atom_data, message", [
    ({"fx": [1.0]}, "per-atom data 'fx' cannot be an AtomData column"),
    ({"two words": [1.0]}, "per-atom data 'two words' cannot be"),
    ({"1st": [1.0]}, "per-atom data '1st' cannot be"),
])
def test_write_cfg_refuses_per_atom_names_it_cannot_write(tmp_path, atom_data, message):
    c = Configuration(positions=np.zeros((1, 3)), species=[0], atom_data=atom_data, source="graded frame")
    with pytest.raises(ValueError, match=f"graded frame: {message}"):
        write_cfg(tmp_path / "x.cfg", c)


@pytest.mark.parametrize("atom_data, message", [
    ({"nbh_grades": [1.0]}, "'nbh_grades' must be 2 numbers, one per atom, got shape \\(1,\\)"),
    ({"nbh_grades": ["high", "low"]}, "'nbh_grades' must be 2 numbers"),
    ({"nbh_grades": [1.0, np.inf]}, "'nbh_grades' contain NaN or infinity"),
    ({"": [1.0, 2.0]}, "named ''"),
])
def test_configuration_checks_per_atom_data(atom_data, message):
    with pytest.raises(ValueError, match=f"frame 3: per-atom data {message}"):
        Configuration(positions=np.zeros((2, 3)), species=[0, 0], atom_data=atom_data, source="frame 3")


def test_write_cfg_drops_non_periodic_cell_rows(tmp_path):
    cell = np.array([[3.0, 0, 0], [0, 4.0, 0], [0.5, 0, 5.0]])
    partial = Configuration(positions=np.zeros((1, 3)), species=[0], cell=cell,
                            pbc=[True, False, True])
    boxed = Configuration(positions=np.zeros((1, 3)), species=[0], cell=cell, pbc=[False] * 3)
    write_cfg(tmp_path / "pbc.cfg", [partial, boxed])
    partial_back, boxed_back = read_cfg(tmp_path / "pbc.cfg")
    np.testing.assert_array_equal(partial_back.cell, [cell[0], cell[2], [0, 0, 0]])
    assert partial_back.pbc.tolist() == [True, True, False]
    assert boxed_back.cell is None and not boxed_back.pbc.any()


def test_write_cfg_species_order_and_refusals(tmp_path):
    mo = read_mlearn_json(DATA / "MoNbTaW_2.json")[1]          # Nb and Mo atoms
    with pytest.raises(ValueError, match="species_order"):
        write_cfg(tmp_path / "x.cfg", mo)
    write_cfg(tmp_path / "x.cfg", mo, species_order=["Nb", "Mo", "Ta", "W"])
    (back,) = read_cfg(tmp_path / "x.cfg")
    assert back.species.tolist() == [["Nb", "Mo"].index(s) for s in mo.species]
    assert_bitwise(back.plus_stress, mo.plus_stress)
    with pytest.raises(ValueError, match="not in species_order"):
        write_cfg(tmp_path / "x.cfg", mo, species_order=["Mo"])
    masked = Configuration(positions=np.zeros((2, 3)), species=[0, 0], forces=np.ones((2, 3)),
                           force_mask=[True, False])
    with pytest.raises(ValueError, match="force_mask"):
        write_cfg(tmp_path / "x.cfg", masked)


# ----------------------------------------------------------------------------- mlearn JSON

def test_mlearn_json_values_and_stress_sign():
    # read in the default VASP order on purpose, to check where each of its six values lands
    with pytest.warns(StressOrderWarning, match="indicate 'xx yy zz xy xz yz'"):
        compressed, sheared, relaxed = read_mlearn_json(DATA / "Mo_mlearn_3.json")
    assert compressed.species.tolist() == ["Mo"] * 54
    assert compressed.energy == -580.51361993
    assert compressed.forces[0].tolist() == [-0.02946291, -0.03265011, -0.14238024]
    assert compressed.positions[0].tolist() == [0.00151855798, 0.006043822775999999,
                                                0.013351526729999999]
    assert compressed.group == "Elastic"
    assert compressed.features["description"] == "Mo 3x3x3 cell, mode 1, strain -0.0600"
    # Orthorhombic cell 8.932694 × 9.502866 × 9.502866 Å³; virial_stress xx yy zz in kBar
    volume = 8.932694 * 9.502866 * 9.502866
    expected = np.array([346.27535, 120.62769, 120.5207]) * volume / 1602.1766208
    np.testing.assert_allclose(np.diag(compressed.plus_stress), expected, rtol=1e-12)
    # compressed along x (strain -6 %): positive pressure is positive PlusStress
    assert np.all(np.diag(compressed.plus_stress) > 0)
    # VASP order xx yy zz xy yz xz: xy = -0.02514, yz = 0.32906, xz = -0.23262 kBar
    np.testing.assert_allclose(
        [compressed.plus_stress[0, 1], compressed.plus_stress[1, 2], compressed.plus_stress[0, 2]],
        np.array([-0.02514, 0.32906, -0.23262]) * volume / 1602.1766208, rtol=1e-12)
    np.testing.assert_array_equal(compressed.plus_stress, compressed.plus_stress.T)
    # the 2-atom relaxed cell is slightly stretched: negative PlusStress
    assert np.all(np.diag(relaxed.plus_stress) < 0)


def test_mlearn_json_stress_order():
    # Entry 2 of the excerpt is sheared in the yz plane (b has a z component). The mlearn
    # Mo file puts its large shear stress (-43.2903 kBar) at index 5: in the default VASP
    # order that is xz; with the order this file really has, it lands on yz.
    volume = 9.502866 ** 3
    with pytest.warns(StressOrderWarning) as caught:
        default = read_mlearn_json(DATA / "Mo_mlearn_3.json")[1]
    assert (caught[0].message.used, caught[0].message.indicated) == (VASP_STRESS_ORDER, MO_ORDER)
    swapped = read_mlearn_json(DATA / "Mo_mlearn_3.json", stress_order=MO_ORDER)[1]
    assert default.plus_stress[0, 2] == pytest.approx(-43.2903 * volume / KBAR, rel=1e-12)
    assert swapped.plus_stress[1, 2] == pytest.approx(-43.2903 * volume / KBAR, rel=1e-12)
    assert swapped.plus_stress[0, 2] == pytest.approx(0.25252 * volume / KBAR, rel=1e-12)
    np.testing.assert_array_equal(np.diag(default.plus_stress), np.diag(swapped.plus_stress))
    with pytest.raises(ValueError, match="stress order"):
        read_mlearn_json(DATA / "Mo_mlearn_3.json", stress_order="xx yy zz xy xy yz")


def test_monbtaw_json_voigt_order():
    sheared, alloy = read_mlearn_json(DATA / "MoNbTaW_2.json")
    # lattice b = (0, 3.168999, -0.3169): a yz shear; its stress 104.51220173 kBar is VASP's
    # index 4 (yz) and must land on [1, 2]
    volume = 3.168999 ** 3
    assert sheared.plus_stress[1, 2] == pytest.approx(104.51220173 * volume / KBAR, rel=1e-12)
    assert sheared.plus_stress[0, 1] == 0.0 and sheared.plus_stress[0, 2] == 0.0
    assert sheared.group == "Mo"
    assert set(alloy.species.tolist()) == {"Nb", "Mo"} and alloy.n_atoms == 16
    assert alloy.energy == -167.02845585
    assert alloy.forces[0].tolist() == [-0.39660368, -0.42358969, -0.00110951]
    assert alloy.group == "Nb-Mo"


def _mlearn_entries() -> list:
    return json.loads((DATA / "Mo_mlearn_3.json").read_text())


def _break(entries, how):
    entry = entries[1]
    if how == "no structure":
        del entry["structure"]
    elif how == "short forces":
        entry["outputs"]["forces"] = entry["outputs"]["forces"][:-1]
    elif how == "NaN energy":
        entry["outputs"]["energy"] = float("nan")
    elif how == "NaN position":
        entry["structure"]["sites"][3]["xyz"][1] = float("nan")
    elif how == "5 stresses":
        entry["outputs"]["virial_stress"] = entry["outputs"]["virial_stress"][:5]
    elif how == "two lattice rows":
        entry["structure"]["lattice"]["matrix"] = entry["structure"]["lattice"]["matrix"][:2]
    elif how == "not an object":
        entries[1] = [1, 2, 3]
    return entries


@pytest.mark.parametrize("how", ["no structure", "short forces", "NaN energy", "NaN position",
                                 "5 stresses", "two lattice rows", "not an object"])
def test_mlearn_json_malformed(tmp_path, how):
    path = tmp_path / "broken_mlearn.json"
    path.write_text(json.dumps(_break(_mlearn_entries(), how)))
    with pytest.raises(FormatError) as info:
        read_mlearn_json(path)
    assert str(info.value).startswith(f"{path}, configuration 1: "), str(info.value)
    assert info.value.index == 1


def test_mlearn_json_missing_outputs_give_no_labels(tmp_path):
    entries = _mlearn_entries()
    del entries[0]["outputs"]
    entries[1]["outputs"] = {"energy": -1.5, "forces": []}
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(entries))
    first, second, _ = read_mlearn_json(path)
    assert first.energy is None and first.forces is None and first.plus_stress is None
    assert second.energy == -1.5 and second.forces is None and second.plus_stress is None


def test_json_file_level_errors(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n {"structure": 1},\n oops\n]')
    with pytest.raises(FormatError, match=r"bad\.json:3: invalid JSON"):
        read_mlearn_json(path)
    path.write_text('{"structure": {}}')
    with pytest.raises(FormatError, match=r"bad\.json: expected a JSON list"):
        read_mlearn_json(path)
    path.write_text("[]")
    with pytest.raises(FormatError, match=r"bad\.json: no configuration"):
        read_study_json(path)


# ----------------------------------------------------------------------------- study JSON

def _study_entry(**changes) -> dict:
    cell = [[4.0, 0.0, 0.0], [1.0, 5.0, 0.0], [0.0, 0.0, 6.0]]
    entry = {"sim": {"cfg": {"cell": cell, "pos": [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]],
                             "types": [1, 0]},
                     "energy": -7.25, "forces": [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]],
                     # kBar, VASP order xx yy zz xy yz xz
                     "stress": [10.0, 20.0, 30.0, 1.0, 2.0, 3.0]},
             # energy, 6 stress weights (VASP order xx yy zz xy yz xz), then 3N = 6 force weights
             "weights": [0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1, 2, 3, 4, 5, 6]}
    for key, value in changes.items():
        target = entry["sim"]["cfg"] if key in ("cell", "pos", "types") else (
            entry if key == "weights" else entry["sim"])
        target[key] = value
    return entry


def test_study_json_synthetic(tmp_path):
    """By default the six stress values (and their weights) are the PlusStress in eV, MLIP order xx yy zz yz xz xy,
    as the study's loss used them; stress_units="kBar" with VASP's order reads maml's convention."""
    path = tmp_path / "study.json"
    path.write_text(json.dumps([_study_entry(), _study_entry(stress=None, weights=None)]))
    c, unlabelled = read_study_json(path)
    assert c.species.tolist() == [1, 0] and c.species.dtype.kind == "i"
    assert c.energy == -7.25
    assert c.forces.tolist() == [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]]
    volume = 4.0 * 5.0 * 6.0  # det of the triangular cell
    assert c.volume == pytest.approx(volume)
    # [10, 20, 30, 1, 2, 3] as xx yy zz yz xz xy, eV
    np.testing.assert_array_equal(c.plus_stress, [[10, 3, 2], [3, 20, 1], [2, 1, 30]])
    assert c.weights["energy"] == 0.5
    np.testing.assert_array_equal(c.weights["forces"], [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(c.weights["stress"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert unlabelled.plus_stress is None and unlabelled.weights is None
    assert c.source == f"{path}, configuration 0"

    vasp, _ = read_study_json(path, stress_order=VASP_STRESS_ORDER, stress_units="kBar")
    expected = np.array([[10, 1, 3], [1, 20, 2], [3, 2, 30]]) * volume / KBAR
    np.testing.assert_allclose(vasp.plus_stress, expected, rtol=1e-14)
    # xx yy zz xy yz xz -> xx yy zz yz xz xy
    np.testing.assert_array_equal(vasp.weights["stress"], [0.1, 0.2, 0.3, 0.5, 0.6, 0.4])
    assert read_configurations(path, stress_units="kBar", stress_order=VASP_STRESS_ORDER)[0].plus_stress \
        == pytest.approx(vasp.plus_stress, rel=1e-15)
    with pytest.raises(ValueError, match="stress units must be one of kBar, eV, got 'GPa'"):
        read_study_json(path, stress_units="GPa")


@pytest.mark.parametrize("change", [
    {"weights": [1.0] * 12}, {"types": [0.0, 1.0]}, {"types": [0]},
    {"energy": float("nan")}, {"forces": [[0.1, 0.2, 0.3]]}, {"stress": [1.0] * 5},
    {"pos": [[0.0, 0.0], [1.0, 1.0]]}, {"weights": [-1.0] + [1.0] * 12}])
def test_study_json_malformed(tmp_path, change):
    path = tmp_path / "broken_study.json"
    path.write_text(json.dumps([_study_entry(), _study_entry(**change)]))
    with pytest.raises(FormatError) as info:
        read_study_json(path)
    assert str(info.value).startswith(f"{path}, configuration 1: "), str(info.value)


@pytest.mark.parametrize("count", [1 + 3 * 2, 1 + 3 * 2 + 6 + 1, 1 + 6 + 3 * 2 - 1])
def test_study_json_weights_length(tmp_path, count):
    """The weights must be exactly 1 + 6 + 3N long; the error names the file and the configuration."""
    path = tmp_path / "short_weights.json"
    path.write_text(json.dumps([_study_entry(), _study_entry(weights=[0.1] * count)]))
    with pytest.raises(FormatError, match=rf"short_weights\.json, configuration 1: weights has {count} values, "
                                          r"expected 1 \+ 6 \+ 3N = 13 for N = 2 atoms"):
        read_study_json(path)


def test_study_json_missing_key(tmp_path):
    entry = _study_entry()
    del entry["sim"]["cfg"]["pos"]
    path = tmp_path / "broken_study.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(FormatError, match=r"broken_study\.json, configuration 0: .*sim\.cfg\.pos"):
        read_study_json(path)


def test_study_json_agpd_from_shared():
    path = SHARED / "data" / "AgPd" / "train.json"
    if not path.is_file():
        pytest.skip(f"{path} not available (the AgPd set is not shipped with the repository)")
    configs = read_study_json(path)
    raw = json.loads(path.read_text())
    assert len(configs) == len(raw) == 1191
    c, sim = configs[5], raw[5]["sim"]
    assert c.n_atoms == 32 and sorted(set(c.species.tolist())) == [0, 1]
    # the PlusStress itself, eV, in MLIP's order xx yy zz yz xz xy
    np.testing.assert_array_equal(c.plus_stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], sim["stress"])
    assert c.weights["forces"].shape == (32, 3)


# ----------------------------------------------------------------------------- ASE

def test_read_ase_extxyz():
    frames = read_ase(DATA / "Mo_test_3.xyz")
    assert len(frames) == 3
    first, last = frames[0], frames[2]
    assert first.species.tolist() == ["Mo"] * 53
    assert first.energy == -539.80255298
    assert first.positions[0].tolist() == [1.71279663, 1.63575924, 1.88789792]
    assert first.forces[0].tolist() == [-4.21477309, -4.16984221, 2.71052649]
    np.testing.assert_array_equal(first.cell, 9.450121 * np.eye(3))
    assert first.pbc.all() and first.plus_stress is None
    assert last.energy == -545.71746001
    assert last.forces[0].tolist() == [3.86400614, 0.65583506, -1.82880923]
    (middle,) = read_ase(DATA / "Mo_test_3.xyz", index=1)
    assert middle.source.endswith("configuration 0")  # numbered within what was read


def test_read_ase_stress_and_molecule(tmp_path):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    cell = [[3.0, 0.0, 0.0], [0.5, 4.0, 0.0], [0.0, 0.0, 5.0]]
    crystal = Atoms("CuAu", positions=[[0, 0, 0], [1, 1, 1]], cell=cell, pbc=True)
    sigma = np.array([0.01, 0.02, 0.03, 0.004, 0.005, 0.006])  # eV/Å³, xx yy zz yz xz xy
    crystal.calc = SinglePointCalculator(crystal, energy=-3.5, stress=sigma,
                                         forces=[[0.1, 0, 0], [-0.1, 0, 0]])
    crystal.info["config_type"] = "alloy"
    molecule = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    write(tmp_path / "mixed.extxyz", [crystal, molecule])
    c, m = read_ase(tmp_path / "mixed.extxyz")
    volume = 3.0 * 4.0 * 5.0
    expected = -volume * np.array([[0.01, 0.006, 0.005], [0.006, 0.02, 0.004],
                                   [0.005, 0.004, 0.03]])
    np.testing.assert_allclose(c.plus_stress, expected, rtol=1e-14)
    assert c.group == "alloy" and c.species.tolist() == ["Cu", "Au"] and c.energy == -3.5
    np.testing.assert_allclose(c.to_ase().get_stress(), sigma, rtol=1e-14)
    assert m.cell is None and m.energy is None and m.forces is None


def test_read_ase_garbage(tmp_path):
    path = tmp_path / "garbage.xyz"
    path.write_text("3\ncomment\nH 0 0\n")
    with pytest.raises(FormatError, match=r"garbage\.xyz"):
        read_ase(path)


# ----------------------------------------------------------------------------- dispatch

def _gzip(src: Path, dst: Path) -> Path:
    with open(src, "rb") as f, gzip.open(dst, "wb") as g:
        shutil.copyfileobj(f, g)
    return dst


def test_read_configurations_dispatch(tmp_path):
    cfg = read_configurations(DATA / "crystals_multi_3.cfg")
    assert len(cfg) == 3 and cfg.name == "crystals_multi_3.cfg"
    mlearn = read_configurations(DATA / "Mo_mlearn_3.json", name="Mo", stress_order=MO_ORDER)
    assert mlearn.name == "Mo" and mlearn[0].species[0] == "Mo"
    study_path = tmp_path / "study.json"
    study_path.write_text(json.dumps([_study_entry()]))
    assert read_configurations(study_path)[0].weights is not None
    xyz = read_configurations(DATA / "Mo_test_3.xyz")
    assert len(xyz) == 3 and xyz[0].energy == -539.80255298
    # an explicit format overrides the extension
    renamed = shutil.copy(DATA / "methane_1.cfg", tmp_path / "methane.txt")
    assert read_configurations(renamed, format="cfg")[0].energy == -113.613482929307
    assert len(read_configurations(DATA / "Mo_test_3.xyz", format="extxyz")) == 3
    assert read_configurations(study_path, format="study-json")[0].energy == -7.25


def test_gzip_is_transparent(tmp_path):
    for name, reader, order in [("Mo_mlearn_3.json", read_mlearn_json, MO_ORDER),
                                ("MoNbTaW_2.json", read_configurations, VASP_STRESS_ORDER)]:
        plain = reader(DATA / name, stress_order=order)
        packed = reader(_gzip(DATA / name, tmp_path / (name + ".gz")), stress_order=order)
        for a, b in zip(plain, packed, strict=True):
            assert_bitwise(a.positions, b.positions)
            assert_bitwise(a.plus_stress, b.plus_stress)
            assert a.species.tolist() == b.species.tolist()
    study = tmp_path / "study.json"
    study.write_text(json.dumps([_study_entry()]))
    packed = read_configurations(_gzip(study, tmp_path / "study.json.gz"))
    assert_bitwise(packed[0].plus_stress, read_study_json(study)[0].plus_stress)


def test_read_configurations_missing_empty_and_unknown(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_configurations(tmp_path / "absent.cfg")
    for name in ("empty.cfg", "empty.json", "empty.xyz"):
        (tmp_path / name).write_text("")
        with pytest.raises(FormatError, match=f"{name}: empty file"):
            read_configurations(tmp_path / name)
    odd = tmp_path / "odd.json"
    odd.write_text('[{"atoms": []}]')
    with pytest.raises(FormatError, match=r"odd\.json, configuration 0: unrecognised JSON"):
        read_configurations(odd)
