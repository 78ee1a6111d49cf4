"""Element names travel with the potential and the data: the ``.mtp`` tag ``potential_tag = elements:C,H``, species
of ``.cfg`` types, and the ASE calculator mapping atoms by chemical symbol, never by order (mtpfit issue 15)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.data import atomic_numbers

from mtpfit import MTP, MTPCalculator
from mtpfit.data.configuration import Configuration
from mtpfit.io import FormatError, read_cfg, read_configurations, write_cfg

DATA = Path(__file__).parent / "data" / "io"


def _ch_potential(species=("C", "H")) -> MTP:
    """A level-8 two-species MTP with small random θ: C and H interact differently, so swapping the types changes
    the energy."""
    mtp = MTP.from_level(8, species=list(species), min_dist=0.8, max_dist=4.0)
    return mtp.copy(mtp.init_params(0.05, seed=7))


def _typed(atoms: Atoms, order: list[str]) -> Configuration:
    """``atoms`` with integer types: type k is the element ``order[k]``."""
    types = [order.index(s) for s in atoms.get_chemical_symbols()]
    cell = atoms.cell.array if atoms.pbc.any() else None
    return Configuration(positions=atoms.positions, species=np.array(types), cell=cell,
                         pbc=atoms.pbc if cell is not None else None)


def _alloy() -> Atoms:
    """A periodic C–H cell (8 atoms, 3 of them H), rattled."""
    atoms = bulk("C", "diamond", a=3.57, cubic=True)
    atoms.symbols[[1, 3, 6]] = "H"
    atoms.rattle(0.05, seed=0)
    return atoms


# ----------------------------------------------------------------------------- the calculator

def test_ch4_is_mapped_by_symbol_not_by_order(tmp_path):
    mtp = _ch_potential()
    ch4 = molecule("CH4")
    reference = MTP(mtp.basis, mtp.theta).evaluate(_typed(ch4, ["C", "H"])).energy
    swapped = MTP(mtp.basis, mtp.theta).evaluate(_typed(ch4, ["H", "C"])).energy
    assert abs(swapped - reference) > 1e-3 * abs(reference)  # the order matters to the physics
    ch4.calc = MTPCalculator(mtp)
    assert ch4.get_potential_energy() == pytest.approx(reference, rel=1e-12)
    h4c = ch4[[1, 2, 3, 4, 0]]  # H listed first: the first symbol seen is not type 0
    h4c.calc = MTPCalculator(mtp)
    assert h4c.get_potential_energy() == pytest.approx(reference, rel=1e-12)
    mtp.write(tmp_path / "ch.mtp")
    ch4.calc = MTPCalculator(tmp_path / "ch.mtp")  # names from the file, no species= needed
    assert ch4.get_potential_energy() == pytest.approx(reference, rel=1e-12)


def test_swapped_species_are_refused(tmp_path):
    mtp = _ch_potential()
    mtp.write(tmp_path / "ch.mtp")
    with pytest.raises(ValueError, match=r"\['H', 'C'\].*\['C', 'H'\]"):
        MTPCalculator(mtp, species=["H", "C"])
    with pytest.raises(ValueError, match=r"ch\.mtp.*\['H', 'C'\].*\['C', 'H'\]"):
        MTPCalculator(tmp_path / "ch.mtp", species=["H", "C"])
    with pytest.raises(ValueError, match=r"ch\.mtp.*\['H', 'C'\].*\['C', 'H'\]"):
        MTP.read(tmp_path / "ch.mtp", species=["H", "C"])
    assert MTP.read(tmp_path / "ch.mtp", species=["C", "H"]).species == ["C", "H"]


def test_unnamed_potential_needs_species_and_missing_elements_are_named(tmp_path):
    mtp = _ch_potential()
    MTP(mtp.basis, mtp.theta).write(tmp_path / "typed.mtp")  # integer labels: no names in the file
    assert MTP.read(tmp_path / "typed.mtp").species == [0, 1]
    with pytest.raises(ValueError, match=r"typed\.mtp.*species="):
        MTPCalculator(tmp_path / "typed.mtp")
    ch4 = molecule("CH4")
    ch4.calc = MTPCalculator(tmp_path / "typed.mtp", species=["C", "H"])
    reference = MTP(mtp.basis, mtp.theta).evaluate(_typed(ch4, ["C", "H"])).energy
    assert ch4.get_potential_energy() == pytest.approx(reference, rel=1e-12)
    ch4[0].symbol = "N"
    with pytest.raises(ValueError, match=r"'N'.*\['C', 'H'\]"):
        ch4.get_potential_energy()


def test_one_species_potential_takes_the_element_of_the_data(tmp_path):
    mtp = MTP.from_level(8, species=[0], min_dist=2.0, max_dist=5.0)
    mtp = mtp.copy(mtp.init_params(0.05, seed=3))
    mtp.write(tmp_path / "one.mtp")
    typed = MTP.read(tmp_path / "one.mtp")
    assert typed.species == [0]
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=1)
    reference = typed.evaluate(_typed(cu, ["Cu"])).energy
    named = Configuration(positions=cu.positions, species=np.array(cu.get_chemical_symbols()), cell=cu.cell.array)
    assert typed.named_for(["Cu"]).evaluate(named).energy == pytest.approx(reference, rel=1e-12)
    cu.calc = MTPCalculator(tmp_path / "one.mtp")
    assert cu.get_potential_energy() == pytest.approx(reference, rel=1e-12)
    with pytest.raises(ValueError, match="does not name its elements"):
        typed.named_for(["Cu", "Ag"])


def test_named_for_rules():
    mtp = _ch_potential()
    assert mtp.named_for(["H", "C"]) is mtp and mtp.named_for(["H"], given=["C", "H"]) is mtp
    with pytest.raises(ValueError, match="contradict"):
        mtp.named_for(["C", "H"], given=["H", "C"])
    with pytest.raises(ValueError, match=r"\['O'\]"):
        mtp.named_for(["C", "O"])
    with pytest.raises(ValueError, match=r"type indices.*species=\['C', 'H'\]"):
        mtp.named_for([0, 1])
    typed = MTP(mtp.basis, mtp.theta)
    assert typed.named_for([0, 1]) is typed
    assert typed.named_for(["C", "H"], given=["C", "H"]).species == ["C", "H"]
    with pytest.raises(ValueError, match=r"does not name its elements.*--species / species="):
        typed.named_for(["C", "H"])


# ----------------------------------------------------------------------------- the .mtp file

def test_names_survive_motep_and_mtpfit(tmp_path):
    from motep.calculator import make_calculator
    from motep.io.mlip.mtp import read_mtp

    mtp = _ch_potential()
    mtp.write(tmp_path / "ch.mtp")
    data = read_mtp(tmp_path / "ch.mtp")
    assert data.potential_tag == "elements:C,H"
    data.species = [atomic_numbers[s] for s in data.potential_tag.removeprefix("elements:").split(",")]
    theirs, ours = _alloy(), _alloy()
    theirs.calc = make_calculator(data, engine="numpy")
    ours.calc = MTPCalculator(tmp_path / "ch.mtp")
    energy = ours.get_potential_energy()
    assert abs(theirs.get_potential_energy() - energy) <= 1e-12 * abs(energy)
    assert np.allclose(theirs.get_forces(), ours.get_forces(), rtol=1e-10, atol=1e-12)
    back = MTP.read(tmp_path / "ch.mtp")
    assert back.species == ["C", "H"] and np.array_equal(back.theta, mtp.theta)


def test_other_tags_round_trip_and_bad_element_tags_are_refused(tmp_path):
    mtp = MTP.from_level(6, species=[0, 1])
    tagged = MTP(mtp.basis.with_changes(potential_tag="fit-2024"), mtp.theta)
    tagged.write(tmp_path / "t.mtp")
    assert MTP.read(tmp_path / "t.mtp").basis.potential_tag == "fit-2024"
    assert MTP.read(tmp_path / "t.mtp").species == [0, 1]
    relabelled = MTP(_ch_potential().basis.with_changes(potential_tag="elements:C,H"), species=["A", "B"])
    relabelled.write(tmp_path / "r.mtp")  # labels that are not elements: the stale names are not written
    assert "potential_tag = \n" in (tmp_path / "r.mtp").read_text()
    text = (tmp_path / "t.mtp").read_text()
    for tag, message in (("elements:C", "must name 2 distinct"), ("elements:C,Qq", "'Qq'"),
                         ("elements:H,H", "must name 2 distinct")):
        (tmp_path / "bad.mtp").write_text(text.replace("potential_tag = fit-2024", f"potential_tag = {tag}"))
        with pytest.raises(FormatError, match=rf"bad\.mtp:\d+: .*{message}"):
            MTP.read(tmp_path / "bad.mtp")


# ----------------------------------------------------------------------------- data

def test_cfg_types_read_as_symbols(tmp_path):
    methane = read_configurations(DATA / "methane_1.cfg", species=["C", "H"])[0]  # MLIP data: type 0 C, 1 H
    assert methane.species.tolist() == ["C", "H", "H", "H", "H"]
    write_cfg(tmp_path / "ch.cfg", [_typed(molecule("CH4"), ["C", "H"]), _typed(_alloy(), ["C", "H"])])
    named = read_cfg(tmp_path / "ch.cfg", species=["C", "H"])
    assert named[1].species.tolist() == _alloy().get_chemical_symbols()
    mtp = _ch_potential()
    typed = read_cfg(tmp_path / "ch.cfg")[1]
    assert mtp.evaluate(named[1]).energy == pytest.approx(MTP(mtp.basis, mtp.theta).evaluate(typed).energy,
                                                          rel=1e-12)
    # line 6: BEGIN_CFG, Size, 5, AtomData, atom 1, then atom 2 (type 1)
    with pytest.raises(FormatError, match=r"ch\.cfg:6: configuration 0: atom 2 has type 1.*\(C\)"):
        read_cfg(tmp_path / "ch.cfg", species=["C"])
    with pytest.raises(FormatError, match=r"ch\.cfg:\d+: configuration 0: atom 2"):
        read_configurations(tmp_path / "ch.cfg", species=["C"])


def test_study_json_types_are_named_and_checked(tmp_path):
    entry = {"sim": {"cfg": {"cell": [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]], "pos": [[0, 0, 0], [1.0, 1.0, 1.0]],
                             "types": [1, 0]}, "energy": -7.25}}
    (tmp_path / "study.json").write_text(json.dumps([entry, entry]))
    data = read_configurations(tmp_path / "study.json", species=["C", "H"])
    assert data[1].species.tolist() == ["H", "C"]
    with pytest.raises(FormatError, match=r"study\.json, configuration 0: type 1"):
        read_configurations(tmp_path / "study.json", species=["C"])


def test_symbol_formats_are_checked_not_reordered(tmp_path):
    from ase.io import write

    atoms = _alloy()
    atoms.calc = MTPCalculator(_ch_potential())
    atoms.get_potential_energy()
    write(tmp_path / "a.extxyz", atoms)
    data = read_configurations(tmp_path / "a.extxyz", species=["H", "C"])
    assert data[0].species.tolist() == atoms.get_chemical_symbols()
    with pytest.raises(ValueError, match=r"elements C are not in species \['H'\]"):
        read_configurations(tmp_path / "a.extxyz", species=["H"])
