"""Warnings and messages that tell the user what the numbers do not cover (issue 15)."""
import json
import warnings

import numpy as np
import pytest

from conftest import DATA, shared_path
from mtpfit import MTP, Configuration, Dataset, Objective
from mtpfit.cli import main
from mtpfit.io import read_cfg, read_configurations, read_mlearn_json
from mtpfit.io.json_formats import VASP_STRESS_ORDER, StressOrderWarning, read_json
from mtpfit.metrics import MissingLabelWarning, error_metrics, format_errors
from mtpfit.train.initial import UnderdeterminedSpeciesWarning, fit_species_energies, starting_point

LEVEL08 = DATA / "mlip2" / "level08_multi"
SWAPPED = "xx yy zz xy xz yz"


def _without(text: str, block: str, configurations) -> str:
    """``text`` of a .cfg file with the ``block`` ("Energy", "PlusStress") of the given configurations removed."""
    parts = text.split("BEGIN_CFG")
    for k in configurations:
        lines = parts[k + 1].split("\n")
        start = next(i for i, line in enumerate(lines) if line.strip().startswith(block))
        del lines[start:start + 2]  # the block's header and its one line of values
        parts[k + 1] = "\n".join(lines)
    return "BEGIN_CFG".join(parts)


@pytest.fixture(scope="module")
def pot():
    return MTP.read(LEVEL08 / "pot.mtp")


# -- 1. configurations without an energy -------------------------------------------------------------------------

def test_cfg_without_energy_block_is_counted_and_named(tmp_path, pot):
    path = tmp_path / "partly.cfg"
    path.write_text(_without((LEVEL08 / "ref10.cfg").read_text(), "Energy", [2, 5]))
    data = read_configurations(path)
    pred = Objective(pot, data).predict()
    with pytest.warns(MissingLabelWarning, match=r"partly\.cfg: 2 of 10 configurations have no energy label "
                                                 r"\(.*configuration 2 .*configuration 5 .*\); the energy errors "
                                                 r"are over the other 8 only") as caught:
        errors = error_metrics(data, pred)
    warning = next(w.message for w in caught if isinstance(w.message, MissingLabelWarning))
    assert (warning.quantity, warning.missing, warning.total) == ("energy", 2, 10)
    m = errors["all"]
    assert (m["n_energies"], m["n_force_configurations"], m["n_stresses"]) == (8, 10, 10)
    kept = [k for k in range(10) if k not in (2, 5)]
    epa = [(pred.energies[k] - data[k].energy) / data[k].n_atoms for k in kept]
    assert m["epa_rmse"] == pytest.approx(np.sqrt(np.mean(np.square(epa))), rel=1e-12)
    assert "all: EPA over the 8 of 10 configurations with an energy" in format_errors(errors)


def test_many_missing_labels_name_the_first_three(pot):
    data = Dataset(read_cfg(LEVEL08 / "ref10.cfg"), "ten")
    for k in range(5):
        data[k].plus_stress = None
    with pytest.warns(MissingLabelWarning, match=r"ten: 5 of 10 configurations have no stress label \(.*"
                                                 r"configuration 0 \(line 1\);.*configuration 2 \(line \d+\) "
                                                 r"and 2 more\); the stress errors are over the other 5 only"):
        errors = error_metrics(data, Objective(pot, data).predict())
    assert errors["all"]["n_stresses"] == 5
    assert "stress over the 5 of 10 configurations with a stress" in format_errors(errors)


def test_fully_labelled_set_gives_no_warning_and_no_count_note(pot):
    data = Dataset(read_cfg(LEVEL08 / "ref10.cfg"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingLabelWarning)
        errors = error_metrics(data, Objective(pot, data).predict())
    table = format_errors(errors)
    assert " over the " not in table and "No " not in table and "S RMSE" in table


# -- 2. quantities no configuration has ----------------------------------------------------------------------------

def test_absent_stress_is_none_and_left_out_of_the_table(pot):
    data = Dataset(read_cfg(LEVEL08 / "ref10.cfg"))
    for c in data:
        c.plus_stress = None
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingLabelWarning)  # nothing is partly labelled
        errors = error_metrics(data, Objective(pot, data).predict())
    m = errors["all"]
    assert m["n_stresses"] == 0
    assert m["stress_rmse"] is None and m["stress_rmse_component"] is None and m["stress_rmse_gpa"] is None
    assert m["epa_rmse"] is not None and m["force_rmse"] is not None
    table = format_errors(errors, "molecules")
    assert "nan" not in table.lower() and "S RMSE" not in table
    assert "No stress labels: that column is left out." in table


def test_a_group_without_a_quantity_shows_a_dash(pot):
    data = Dataset(read_cfg(LEVEL08 / "ref10.cfg"))
    for k, c in enumerate(data):
        c.group = "bulk" if k < 5 else "molecule"
        if k >= 5:
            c.plus_stress = None
    with pytest.warns(MissingLabelWarning, match="5 of 10 configurations have no stress label"):
        errors = error_metrics(data, Objective(pot, data).predict())
    assert errors["molecule"]["stress_rmse_gpa"] is None and errors["bulk"]["stress_rmse_gpa"] is not None
    rows = {line.split()[0]: line for line in format_errors(errors).splitlines()[2:5]}
    assert rows["molecule"].rstrip().endswith("—") and "nan" not in rows["molecule"]
    assert not rows["bulk"].rstrip().endswith("—")


def test_evaluate_json_prints_null_for_absent_stress(tmp_path, capsys):
    text = (LEVEL08 / "ref10.cfg").read_text()
    path = tmp_path / "nostress.cfg"
    path.write_text(_without(text, "PlusStress", range(text.count("BEGIN_CFG"))))
    assert main(["evaluate", str(LEVEL08 / "pot.mtp"), str(path), "--json"]) == 0
    printed = capsys.readouterr().out
    assert "NaN" not in printed
    errors = json.loads(printed)
    assert errors["all"]["stress_rmse_gpa"] is None and errors["all"]["n_stresses"] == 0
    assert main(["evaluate", str(LEVEL08 / "pot.mtp"), str(path)]) == 0
    assert "No stress labels" in capsys.readouterr().out


def test_3bpa_molecules_print_no_nan_stress_and_leave_species_energies_open():
    """Dataset-scale: the 3BPA molecules (C12H12N2O, types 0-3) carry no stresses, and one composition."""
    data = read_configurations(shared_path("data", "3BPA", "train_300K.cfg"))[:20]
    mtp = MTP.from_level(6, species=[0, 1, 2, 3], min_dist=0.8)
    objective = Objective(mtp, data)
    with pytest.warns(UnderdeterminedSpeciesWarning, match="composition 0:1:2:3 = 12:12:2:1"):
        x = fit_species_energies(objective, mtp.init_params(0.1, 0))
    errors = error_metrics(data, objective.predict(x))
    assert errors["all"]["stress_rmse_gpa"] is None
    table = format_errors(errors, "3BPA")
    assert "nan" not in table.lower() and "No stress labels" in table


# -- 3. species energies the compositions do not determine --------------------------------------------------------

def _molecules(compositions, seed=0) -> Dataset:
    """Random clusters of species 0/1/2 (counts per configuration given), with made-up energies."""
    rng = np.random.default_rng(seed)
    configs = []
    for k, counts in enumerate(compositions):
        species = np.repeat(np.arange(len(counts)), counts)
        # atoms on a jittered line 2.5 Å apart: inside the cutoff, never overlapping
        positions = np.column_stack([2.5 * np.arange(len(species)), rng.normal(0, 0.1, (len(species), 2))])
        configs.append(Configuration(positions=positions, species=species, energy=float(-3.0 * len(species)
                                     + rng.normal(0, 0.1)), source=f"cluster {k}"))
    return Dataset(configs, "clusters")


def test_same_composition_warns_and_takes_the_minimum_norm_species_energies():
    data = _molecules([(1, 1)] * 4 + [(2, 2)] * 3)
    mtp = MTP.from_level(6, species=[0, 1])
    objective = Objective(mtp, data)
    with pytest.warns(UnderdeterminedSpeciesWarning,
                      match=r"clusters: the species energies ξ of 0, 1 are not determined separately: all 7 "
                            r"configurations with an energy have the composition 0:1 = 1:1, so the energies fix "
                            r"only the composition-weighted sum Σ_s n_s ξ_s; the minimum-norm solution is chosen")\
            as caught:
        x = fit_species_energies(objective, mtp.init_params(0.1, 0))
    warning = next(w.message for w in caught if isinstance(w.message, UnderdeterminedSpeciesWarning))
    assert warning.species == [0, 1] and warning.rank == 1
    xi = x[mtp.blocks["species"]]
    assert xi[0] == pytest.approx(xi[1], rel=1e-10)  # the minimum-norm split of a 1:1 sum


def test_partial_rank_is_described_as_such():
    # species 0 and 1 always come in equal numbers: 2 of the 3 dimensions are determined
    data = _molecules([(1, 1, 2), (2, 2, 1), (1, 1, 1)])
    mtp = MTP.from_level(6, species=[0, 1, 2])
    with pytest.warns(UnderdeterminedSpeciesWarning, match=r"ξ of 0, 1, 2 are not determined separately: the "
                                                           r"compositions of the 3 configurations with an energy "
                                                           r"span only 2 of 3 dimensions"):
        fit_species_energies(Objective(mtp, data), mtp.init_params(0.1, 0))


def test_varied_compositions_and_absent_species_do_not_warn():
    mtp = MTP.from_level(6, species=[0, 1, 2])
    # species 2 never appears: absent, not undetermined
    data = _molecules([(1, 1), (2, 1), (1, 3)])
    objective = Objective(mtp, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnderdeterminedSpeciesWarning)
        fit_species_energies(objective, mtp.init_params(0.1, 0))
        starting_point(objective, mtp.init_params(0.1, 0), "resolve")


def test_resolve_start_warns_once():
    data = _molecules([(1, 1)] * 3 + [(3, 3)] * 3)
    mtp = MTP.from_level(6, species=[0, 1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        starting_point(Objective(mtp, data), mtp.init_params(0.1, 0), "resolve")
    ours = [w for w in caught if issubclass(w.category, UnderdeterminedSpeciesWarning)]
    assert len(ours) == 1
    assert "composition 0:1 = 1:1" in str(ours[0].message)
    assert "the undetermined combinations keep their starting values" in str(ours[0].message)


# -- 4. the stress order of mlearn JSON files ---------------------------------------------------------------------

_A = 3.6  # Å, cubic cell


def _record(shear: str | None, stress: list[float], group: str = "Elastic") -> dict:
    """An mlearn entry: one Cu atom in a cubic cell sheared in plane ``shear`` (or not), 6 stored stresses."""
    cell = np.eye(3) * _A
    if shear is not None:
        i, j = {"xy": (1, 0), "xz": (0, 2), "yz": (1, 2)}[shear]
        cell[i, j] = 0.05 * _A
    return {"structure": {"lattice": {"matrix": cell.tolist()},
                          "sites": [{"species": [{"element": "Cu", "occu": 1}], "xyz": [0.0, 0.0, 0.0]}]},
            "outputs": {"energy": -3.7, "forces": [[0.0, 0.0, 0.0]], "virial_stress": stress},
            "group": group, "num_atoms": 1}


def _write(tmp_path, records, name="set.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


# stored as Cu, Mo and Ni have it: xx yy zz xy xz yz
_SWAPPED_FILE = [_record("xz", [1.0, 2.0, 0.5, 0.1, -40.0, 0.3]),     # xz shear stored 5th
                 _record("yz", [1.5, 0.7, 0.4, -0.2, 0.1, 35.0]),     # yz shear stored 6th
                 _record("xy", [1.0, 1.0, 0.2, 30.0, 0.1, 0.1]),      # xy: 4th in both orders
                 _record(None, [80.0, 40.0, 40.0, 0.0, 0.0, 0.0])]    # a normal strain: no shear to check
# stored in VASP order, as Ge, Li and Si have it: xx yy zz xy yz xz
_VASP_FILE = [_record("xz", [1.0, 2.0, 0.5, 0.1, 0.3, -40.0]),
              _record("yz", [1.5, 0.7, 0.4, -0.2, 35.0, 0.1])]


def test_stress_order_contradicted_by_sheared_cells_warns(tmp_path):
    path = _write(tmp_path, _SWAPPED_FILE, "Cu_like.json")
    with pytest.warns(StressOrderWarning, match=r"Cu_like\.json: read with the stress order 'xx yy zz xy yz xz', "
                                                r"but its sheared elastic cells indicate 'xx yy zz xy xz yz': 1 of "
                                                r"1 cells sheared in xz \(e\.g\. configuration 0\) have their "
                                                r"largest shear stress where that order reads yz.*--stress-order "
                                                r"'xx yy zz xy xz yz'") as caught:
        wrong = read_mlearn_json(path)
    warning = next(w.message for w in caught if isinstance(w.message, StressOrderWarning))
    assert (warning.used, warning.indicated) == (VASP_STRESS_ORDER, SWAPPED)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StressOrderWarning)
        right = read_mlearn_json(path, stress_order=SWAPPED)
        assert right[0].plus_stress[0, 2] == pytest.approx(-40.0 * _A ** 3 / 1602.1766208)
    assert wrong[0].plus_stress[1, 2] == right[0].plus_stress[0, 2]  # what the warning is about


def test_vasp_order_file_read_swapped_warns_and_read_right_does_not(tmp_path):
    path = _write(tmp_path, _VASP_FILE)
    with pytest.warns(StressOrderWarning, match=r"read with the stress order 'xx yy zz xy xz yz', but its sheared "
                                                r"elastic cells indicate 'xx yy zz xy yz xz'.*stress_order="
                                                r"'xx yy zz xy yz xz'"):
        read_json(path, stress_order=SWAPPED)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StressOrderWarning)
        read_mlearn_json(path)


def test_one_sheared_plane_is_enough_and_other_orders_are_completed(tmp_path):
    # only an xz shear, stored 4th (where VASP order has xy): xz and xy trade places, yz stays
    path = _write(tmp_path, [_record("xz", [1.0, 2.0, 0.5, -40.0, 0.1, 0.3])])
    with pytest.warns(StressOrderWarning, match=r"indicate 'xx yy zz xz yz xy'"):
        read_mlearn_json(path)


def test_nothing_to_check_gives_no_warning(tmp_path):
    unsheared = [_record(None, [80.0, 40.0, 40.0, 0.0, 0.0, 0.0]), _record("xy", [1.0, 1.0, 0.2, 30.0, 0.1, 0.1])]
    not_elastic = [_record("xz", [1.0, 2.0, 0.5, 0.1, -40.0, 0.3], group="AIMD")]
    weak = [_record("xz", [1.0, 2.0, 0.5, 0.1, -40.0, -30.0])]  # no shear component dominates
    with warnings.catch_warnings():
        warnings.simplefilter("error", StressOrderWarning)
        for records in (unsheared, not_elastic, weak):
            for order in (VASP_STRESS_ORDER, SWAPPED):
                read_mlearn_json(_write(tmp_path, records), stress_order=order)


def test_real_mlearn_excerpt_is_flagged_in_vasp_order():
    """Mo_mlearn_3.json (3 entries of mlearn's Mo training set) holds one yz-sheared Elastic cell."""
    with pytest.warns(StressOrderWarning, match=r"Mo_mlearn_3\.json: .* cells sheared in yz"):
        read_configurations(DATA / "io" / "Mo_mlearn_3.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error", StressOrderWarning)
        read_mlearn_json(DATA / "io" / "Mo_mlearn_3.json", stress_order=SWAPPED)
        read_mlearn_json(DATA / "io" / "MoNbTaW_2.json")  # maml's Strain_new cells, VASP order


# the order each mlearn file really has: the one that gives the published MTPs the lower stress error
# (Cu test 1.38 vs 1.72 GPa, Mo training 0.67 vs 1.97, Ni test 1.67 vs 2.32; Ge, Li, Si the other way round)
_TRUE_ORDER = {"Cu": SWAPPED, "Mo": SWAPPED, "Ni": SWAPPED,
               "Ge": VASP_STRESS_ORDER, "Li": VASP_STRESS_ORDER, "Si": VASP_STRESS_ORDER}


def test_real_mlearn_files_warn_exactly_when_read_with_the_wrong_order():
    """Dataset-scale: every mlearn JSON file in both orders. Mo's test file has xy shears only, which both
    orders store alike: nothing to check there."""
    root = shared_path("data", "mlearn", "json")
    flagged, expected = set(), set()
    for path in sorted(root.glob("*/*.json")):
        element = path.parent.name
        for order in (VASP_STRESS_ORDER, SWAPPED):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", StressOrderWarning)
                read_mlearn_json(path, stress_order=order)
            ours = [w.message for w in caught if issubclass(w.category, StressOrderWarning)]
            key = (element, path.stem, order)
            if ours:
                flagged.add(key)
                assert ours[0].indicated == _TRUE_ORDER[element], key
            if order != _TRUE_ORDER[element] and (element, path.stem) != ("Mo", "test"):
                expected.add(key)
    assert flagged == expected
    assert len(expected) == 10  # 11 files, less Mo's test file
