"""The reader reproducers of issue 14, each a real file of tests/data with one change.

Every one used to leak an exception other than ``FormatError`` (OverflowError, UnicodeDecodeError, a pybind
TypeError, MemoryError, RecursionError), hang, or be accepted silently (a ``num_atoms`` contradicting the sites, an
element ``null`` read as species "None", JSON ``true`` read as 1.0, ``.mtp`` indices 1.5 cast to 1, every product
dropped with ``alpha_index_times_count = 0``, ``scaling = 1e300`` giving NaN energies). Each must now raise a
``FormatError`` naming the file and the line or the configuration (or, for the TOML files, a ``ValueError`` naming
the file).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from mtpfit.bench import load_campaign
from mtpfit.cli import _parser, _with_config
from mtpfit.io import FormatError, read_ase, read_cfg, read_mlearn_json, read_study_json
from mtpfit.io.cfg import MAX_TYPE
from mtpfit.potential.mtp_file import MAX_SPECIES, read_mtp

DATA = Path(__file__).parent / "data"
POT = DATA / "mlip2" / "level08_multi" / "pot.mtp"
METHANE = DATA / "io" / "methane_1.cfg"
MLEARN = DATA / "io" / "MoNbTaW_2.json"
XYZ = DATA / "io" / "Mo_test_3.xyz"
CAMPAIGN = Path(__file__).parents[1] / "benchmarks" / "campaigns" / "3_agpd_minibatch.toml"


def _changed(tmp_path, source: Path, old: str, new: str, name: str | None = None) -> Path:
    text = source.read_text()
    assert old in text, old
    path = tmp_path / (name or f"changed{source.suffix}")
    path.write_text(text.replace(old, new, 1))
    return path


def _refused(reader, path: Path, where: str, fragment: str) -> FormatError:
    """The reader raises a FormatError whose message starts with the file and ``where`` and contains
    ``fragment``."""
    with pytest.raises(FormatError) as info:
        reader(path)
    message = str(info.value)
    assert message.startswith(f"{path}{where}"), message
    assert fragment in message, message
    return info.value


# ----------------------------------------------------------------------------- .cfg

ATOM_2 = "             2    1      -0.000000      0.367524"  # line 6 of methane_1.cfg: id, type, x, y


@pytest.mark.parametrize("old, new, fragment", [
    (ATOM_2, ATOM_2.replace(" 1 ", " 100000000000000000000 "), f"out of range 0…{MAX_TYPE}"),
    (ATOM_2, ATOM_2.replace(" 2 ", " 100000000000000000000 "), "id: 100000000000000000000 is out of range"),
    (ATOM_2, ATOM_2.replace(" 1 ", " 1e20 "), "'1e20' is not an integer"),
    (ATOM_2, ATOM_2.replace(" 1 ", " true "), "'true' is not an integer"),
    (ATOM_2, ATOM_2.replace("-0.000000", "1_000"), "'1_000' is not a number"),
])
def test_cfg_type_and_id_out_of_range_are_named(tmp_path, old, new, fragment):
    """A type or id of 1e20 raised OverflowError (int64 column); the type is now at most MAX_TYPE."""
    _refused(read_cfg, _changed(tmp_path, METHANE, old, new), ":6: ", fragment)


def test_cfg_largest_type_is_read(tmp_path):
    path = _changed(tmp_path, METHANE, "             2    1 ", f"             2    {MAX_TYPE} ")
    assert read_cfg(path)[0].species.tolist() == [0, MAX_TYPE, 1, 1, 1]
    assert MAX_TYPE == MAX_SPECIES - 1  # a type indexes an .mtp file's species


def test_non_utf8_cfg(tmp_path):
    path = tmp_path / "latin1.cfg"
    path.write_bytes(METHANE.read_bytes().replace(b"Energy", b"Ener\xe9gy"))
    _refused(read_cfg, path, ": ", "not a UTF-8 text file")


# ----------------------------------------------------------------------------- .mtp

def _mtp(tmp_path, old: str, new: str) -> Path:
    return _changed(tmp_path, POT, old, new, "broken.mtp")


LINE = {key: n for n, text in enumerate(POT.read_text().split("\n"), start=1)
        for key in [text.split("=")[0].strip()] if "=" in text}


@pytest.mark.parametrize("field, old, new, fragment", [
    ("alpha_index_basic", "{0, 1, 0, 0}", "{0, 2147483648, 0, 0}", "2147483648 is out of range 0…64"),
    ("alpha_index_basic", "{0, 1, 0, 0}", "{0, 1e30, 0, 0}", "1e30 is out of range"),
    ("alpha_index_times", "{1, 1, 1, 12}", "{1, 2147483648, 1, 12}", "2147483648 is out of range 0…17"),
    ("alpha_index_times", "{1, 1, 1, 12}", "{1, 1, 1e30, 12}", "1e30 is out of range"),
    ("alpha_moment_mapping", "= {0, 10,", "= {0, 1e30,", "1e30 is out of range 0…17"),
    ("alpha_moment_mapping", "= {0, 10,", "= {0, 2147483648,", "2147483648 is out of range"),
])
def test_mtp_index_beyond_int32(tmp_path, field, old, new, fragment):
    """2147483648 or 1e30 in an index list raised OverflowError (int32 arrays)."""
    _refused(read_mtp, _mtp(tmp_path, old, new), f":{LINE[field]}: ", fragment)


@pytest.mark.parametrize("field, old, new", [
    ("alpha_index_basic", "{0, 1, 0, 0}", "{0, 1.5, 0, 0}"),
    ("alpha_index_times", "{1, 1, 1, 12}", "{1, 1.5, 1, 12}"),
    ("alpha_index_times", "{1, 1, 1, 12}", "{1, 1, 1.5, 12}"),
    ("alpha_moment_mapping", "= {0, 10,", "= {0, 10.5,"),
    ("species_count", "species_count = 3", "species_count = 2.5"),
])
def test_mtp_non_integer_index_is_not_cast(tmp_path, field, old, new):
    """1.5 was cast to 1."""
    _refused(read_mtp, _mtp(tmp_path, old, new), f":{LINE[field]}: ", "is not an integer")


@pytest.mark.parametrize("field, value, limit", [
    ("species_count", "2147483648", "MAX_SPECIES"), ("species_count", "1000000000", "MAX_SPECIES"),
    ("radial_basis_size", "1000000000", "MAX_RADIAL_BASIS_SIZE"),
    ("radial_basis_size", "2147483648", "MAX_RADIAL_BASIS_SIZE"),
    ("radial_funcs_count", "2147483648", "MAX_RADIAL_FUNCS"),
    ("alpha_moments_count", "1000000000", "MAX_MOMENTS"), ("alpha_moments_count", "2147483648", "MAX_MOMENTS"),
])
def test_mtp_counts_beyond_their_limits(tmp_path, field, value, limit):
    """Counts ≥ 2³¹ raised a pybind TypeError, 10⁹ a MemoryError, alpha_moments_count = 10⁹ hung."""
    path = _mtp(tmp_path, re.search(rf"{field} = \d+", POT.read_text())[0], f"{field} = {value}")
    start = time.perf_counter()
    _refused(read_mtp, path, f":{LINE[field]}: ", f"{value} is out of range")
    _refused(read_mtp, path, ":", limit)
    assert time.perf_counter() - start < 1.0


def test_mtp_times_count_zero_does_not_drop_the_products(tmp_path):
    path = _mtp(tmp_path, "alpha_index_times_count = 14", "alpha_index_times_count = 0")
    _refused(read_mtp, path, f":{LINE['alpha_index_times_count']}: ", "= 0 but 14 entries follow")


def test_mtp_without_products_for_product_moments(tmp_path):
    """With the count and the list both emptied, the mapped product moments would be 0."""
    text = re.sub(r"alpha_index_times = \{.*\}", "alpha_index_times = {}", POT.read_text())
    path = tmp_path / "no_products.mtp"
    path.write_text(text.replace("alpha_index_times_count = 14", "alpha_index_times_count = 0"))
    _refused(read_mtp, path, f":{LINE['alpha_index_times']}: ", "moment 11 is neither basic nor written")


@pytest.mark.parametrize("field, old, new", [
    ("scaling", "scaling = 4.917081175672311e-02", "scaling = 1e300"),
    ("species_coeffs", "species_coeffs = {", "species_coeffs = {-1e300, "),
    ("moment_coeffs", "moment_coeffs = {", "moment_coeffs = {1e300, "),
])
def test_mtp_values_beyond_the_bound(tmp_path, field, old, new):
    """scaling = 1e300 or a coefficient of ±1e300 gave NaN or inf energies."""
    path = _mtp(tmp_path, old, new)
    if field != "scaling":  # one more value than the count, but the bound is checked first
        path.write_text(path.read_text().replace("1e300, ", "1e300, ", 1))
    _refused(read_mtp, path, f":{LINE[field]}: ", "beyond ±1e+100 (MAX_ABS_VALUE)")


def test_mtp_radial_coefficient_beyond_the_bound(tmp_path):
    path = _mtp(tmp_path, "{3.069316856299950e-01,", "{1e300,")
    _refused(read_mtp, path, ":14: ", "radial_coeffs block 0-0: 1e300 is beyond")


@pytest.mark.parametrize("old, new, fragment", [
    ("scaling = 4.917081175672311e-02", "scaling = 0", "scaling must be positive"),
    ("species_count = 3", "species_count = 3x", "'3x' is not a number"),
    ("alpha_moments_count = 18", "alpha_moments_count = 18\nalpha_moments_count = 18", "given twice"),
    ("potential_tag = ", "potential_tga = ", "unknown field"),
    ("{0, 1, 0, 0}", "{0, 1, 0}", "entry 1 has 3 values, expected 4"),
])
def test_mtp_other_malformed_values(tmp_path, old, new, fragment):
    with pytest.raises(FormatError, match=re.escape(fragment)) as info:
        read_mtp(_mtp(tmp_path, old, new))
    assert info.value.line is not None


def test_non_utf8_mtp(tmp_path):
    path = tmp_path / "latin1.mtp"
    path.write_bytes(POT.read_bytes().replace(b"MTP1m", b"MTP\xe9"))
    _refused(read_mtp, path, ": ", "not a UTF-8 text file")


# ----------------------------------------------------------------------------- JSON

def _entries(source: Path = MLEARN) -> list:
    return json.loads(source.read_text())


def _write(tmp_path, entries, name="changed.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return path


@pytest.mark.parametrize("reader", [read_mlearn_json, read_study_json])
def test_json_nested_5000_deep(tmp_path, reader):
    """A RecursionError leaked."""
    path = tmp_path / "deep.json"
    path.write_text("[" * 5000 + "]" * 5000)
    _refused(reader, path, ": ", "nested too deeply")


def test_non_utf8_json(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(MLEARN.read_bytes().replace(b'"Mo_pv"', b'"Mo\xe9"', 1))
    _refused(read_mlearn_json, path, ": ", "not a text file")


def test_mlearn_num_atoms_contradicting_the_sites(tmp_path):
    entries = _entries()
    entries[1]["num_atoms"] = 15
    _refused(read_mlearn_json, _write(tmp_path, entries), ", configuration 1: ",
             "num_atoms is 15 but structure.sites has 16 sites")


@pytest.mark.parametrize("element", [None, 0, "", "Xx", True])
def test_mlearn_element_that_is_no_symbol(tmp_path, element):
    """null and 0 became species "None" and "0"."""
    entries = _entries()
    entries[0]["structure"]["sites"][1]["species"][0]["element"] = element
    _refused(read_mlearn_json, _write(tmp_path, entries), ", configuration 0: ",
             f"structure.sites[1] has element {json.dumps(element)}, not an element symbol")


@pytest.mark.parametrize("where, name", [
    (("structure", "sites", 0, "xyz", 2), "structure.sites.xyz"),
    (("structure", "lattice", "matrix", 1, 1), "structure.lattice.matrix"),
    (("outputs", "forces", 1, 0), "outputs.forces"),
    (("outputs", "stress", 3), "outputs.stress"),
    (("outputs", "energy"), "outputs.energy"),
    (("structure", "sites", 0, "species", 0, "occu"), "occupancy true"),
])
@pytest.mark.parametrize("value", [True, False, "1.5"])
def test_mlearn_booleans_and_strings_are_not_numbers(tmp_path, where, name, value):
    """true was read as 1.0 (numpy converts it, and "1.5" too)."""
    entries = _entries()
    target = entries[0]
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    with pytest.raises(FormatError, match=r", configuration 0: ") as info:
        read_mlearn_json(_write(tmp_path, entries))
    assert (name if value is True else name.split()[0]) in str(info.value)


def _study_entry() -> dict:
    """The first configuration of methane_1.cfg in the study's layout (with a cubic cell)."""
    (c,) = read_cfg(METHANE)
    n = c.n_atoms
    return {"sim": {"cfg": {"cell": [[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]], "pos": c.positions.tolist(),
                            "types": c.species.tolist()},
                    "energy": c.energy, "forces": c.forces.tolist(), "stress": [1.0, 2.0, 3.0, 0.1, 0.2, 0.3]},
            "weights": [1.0 / n] + [0.001 / n] * 6 + [0.01] * 3 * n}


@pytest.mark.parametrize("where, name", [
    (("sim", "cfg", "pos", 1, 0), "sim.cfg.pos"), (("sim", "cfg", "cell", 0, 0), "sim.cfg.cell"),
    (("sim", "forces", 2, 1), "sim.forces"), (("sim", "stress", 0), "sim.stress"), (("weights", 3), "weights"),
    (("sim", "cfg", "types", 1), "sim.cfg.types"), (("sim", "energy"), "sim.energy"),
])
def test_study_booleans_are_not_numbers(tmp_path, where, name):
    entry = _study_entry()
    assert read_study_json(_write(tmp_path, [entry]))[0].n_atoms == 5
    target = entry
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = True
    _refused(read_study_json, _write(tmp_path, [entry]), ", configuration 0: ", name)


@pytest.mark.parametrize("value", [2**31, MAX_TYPE + 1, -1, 1.0, "1"])
def test_study_types_out_of_range(tmp_path, value):
    entry = _study_entry()
    entry["sim"]["cfg"]["types"][0] = value
    _refused(read_study_json, _write(tmp_path, [entry]), ", configuration 0: ", "sim.cfg.types must be 5")


def test_json_integer_beyond_float_range(tmp_path):
    entry = _study_entry()
    entry["sim"]["forces"][0][0] = 10**400
    _refused(read_study_json, _write(tmp_path, [entry]), ", configuration 0: ", "beyond the float range")
    path = tmp_path / "digits.json"
    path.write_text(json.dumps([entry]).replace(str(10**400), "9" * 5000))
    _refused(read_study_json, path, ": ", "invalid JSON")


# ----------------------------------------------------------------------------- extxyz (ASE)

def _frame(tmp_path, change) -> Path:
    lines = XYZ.read_text().split("\n")[:55]
    lines = change(lines)
    path = tmp_path / "changed.xyz"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_extxyz_integer_column_overflow(tmp_path):
    """An int column of 1e20 raised OverflowError inside ASE."""
    def change(lines):
        row = lines[2].split()
        row[-1] = "100000000000000000000"
        return lines[:2] + [" ".join(row)] + lines[3:]
    _refused(read_ase, _frame(tmp_path, change), ": ", "OverflowError")


@pytest.mark.parametrize("count", ["100000000000000000000", "1000000000", "54", "-1"])
def test_extxyz_atom_count_beyond_the_file(tmp_path, count):
    """ASE reads one line per counted atom, past the end of the file too: a count of 1e20 hung."""
    start = time.perf_counter()
    _refused(read_ase, _frame(tmp_path, lambda lines: [count] + lines[1:]), ":1: ",
             f"the frame header counts {count} atoms but 53 lines follow")
    assert time.perf_counter() - start < 1.0


def test_extxyz_energy_true(tmp_path):
    path = _frame(tmp_path, lambda lines: [lines[0], lines[1].replace("energy=-539.80255298", "energy=T")] + lines[2:])
    _refused(read_ase, path, ", configuration 0: ", "the energy is True, not a number")


# ----------------------------------------------------------------------------- TOML

@pytest.mark.parametrize("text, fragment", [
    ("level = 7\n", "level must be an integer among 6, 8"),
    ("max_iter = true\n", "max_iter must be an integer, found True"),
    ("max_iter = 1.5\n", "max_iter must be an integer"),
    ("lr = nan\n", "lr must be a finite number"),
    ("species = \"Mo\"\n", "species must be a non-empty list"),
    ("quiet = 1\n", "quiet must be true or false"),
    ("command = \"bench\"\n", "unknown option(s) ['command']"),
    pytest.param("a = " + "[" * 3000 + "]" * 3000 + "\n", "maximum recursion depth", id="nested 3000 deep"),
])
def test_train_config_values_are_checked(tmp_path, text, fragment):
    """A string where argparse wants an int exited with argparse's message (no file named); a bool, a float or
    a level outside the choices was taken as it was."""
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        _with_config(_parser(), ["train", "--config", str(path)])
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value), str(info.value)


def test_train_config_accepts_what_the_command_line_does(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('level = 8\nspecies = [0, 1]\nlr = 1\nquiet = true\n[schedule_options]\nt_max = 20\n')
    args = _with_config(_parser(), ["train", "--config", str(path)])
    assert (args.level, args.species, args.lr, args.quiet, args.schedule_options) == (8, [0, 1], 1, True,
                                                                                      {"t_max": 20})


@pytest.mark.parametrize("old, new, fragment", [
    ("seeds = [1, 2, 3]", "seeds = [1, true]", "seeds must be integers"),
    ("seeds = [1, 2, 3]", "seeds = 1979-05-27", "dates, times"),
    ('name = "sgd"\nepochs = 100000', 'name = "sgd"\nepochs = nan', "NaN and infinity"),
    ("batch_size = [8, 32, 128]", "batch_size = [8, 1.5]", "optimizer 0: batch_size must be an integer"),
    ("batch_size = [8, 32, 128]", "batch_size = []", "sweep.batch_size must be a non-empty list"),
    ("sweep = { batch_size", "sweep = { bacth_size", "sweep.bacth_size must be"),
    ('name = "sgd"', 'name = 3', "optimizer 0: name must be a string"),
    ("[datasets.AgPd]", "[datasets]\nAgPd = 1\n[datasets.x]", "every entry of [datasets] must be a table"),
    ("[[optimizers]]\nname = \"sgd\"", "optimizers = [1]\n[[x]]\nname = \"sgd\"", "unknown keys"),
    pytest.param("seeds = [1, 2, 3]", "seeds = [" + ", ".join(map(str, range(20000))) + "]", "more than 100000",
                 id="20000 seeds"),
])
def test_campaign_values_are_checked(tmp_path, old, new, fragment):
    """Wrong TOML types raised TypeError or AttributeError while the grid was expanded, or later in the runs."""
    path = _changed(tmp_path, CAMPAIGN, old, new, "campaign.toml")
    with pytest.raises(ValueError) as info:
        load_campaign(path)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value), str(info.value)


def test_non_utf8_toml(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(CAMPAIGN.read_bytes().replace(b"agpd_minibatch", b"agpd\xe9", 1))
    for load in (load_campaign, lambda p: _with_config(_parser(), ["train", "--config", str(p)])):
        with pytest.raises(ValueError, match=re.escape(f"{path}: 'utf-8' codec can't decode")):
            load(path)


@pytest.mark.parametrize("z", ["-1", "0", "119"])
def test_extxyz_atomic_number_that_is_no_element(tmp_path, z):
    """ASE takes the Z column over the species and indexes its symbols with it: Z = -1 became "Og"."""
    def change(lines):
        row = lines[3].split()
        row[-1] = z
        return lines[:3] + [" ".join(row)] + lines[4:]
    _refused(read_ase, _frame(tmp_path, change), ", configuration 0: ", f"atomic number {z} is not an element")
