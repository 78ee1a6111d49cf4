"""Validation at the boundaries (issue 14): geometries that used to kill the process inside the neighbour-list
library, the neighbour-list size guard, warnings for short distances and absurd site energies, non-finite
predictions and losses, mini-batch indices and species labels."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from conftest import DATA
from mtpfit import MTP, Configuration, Dataset, MTPCalculator, Objective
from mtpfit.data import neighbors
from mtpfit.data.neighbors import ShortDistanceWarning, estimated_pairs, neighbor_pairs
from mtpfit.io import read_cfg
from mtpfit.objective import training_set
from mtpfit.potential import mtp as mtp_module
from mtpfit.potential.mtp import AbsurdEnergyWarning, species_labels

POT = DATA / "mlip2" / "level08_multi" / "pot.mtp"
FRAMES = DATA / "mlip2" / "level08_multi" / "ref10.cfg"
PYTHON_DIR = Path(neighbors.__file__).resolve().parents[2]


# -- geometries that crashed vesin (SIGFPE), hung or exhausted the memory: run in a subprocess with a memory
# limit and a timeout, so that a regression fails these tests instead of killing or stalling pytest ------------
_MO = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(3)

CRASH_CASES = {
    # name: (positions, cell or None, cutoff Å, expected: "refused", or "pairs" checked against a brute force)
    "cell 1e300": ([[0, 0, 0], [1.5, 1.5, 1.5]], (np.eye(3) * 1e300).tolist(), 5.0, "refused"),
    "coordinate 1e300": ([[0, 0, 0], [1e300, 0, 0]], None, 5.0, "refused"),
    "coordinate 1e7": ([[0, 0, 0], [1.5, 1.5, 1.5], [1e7, 0, 0]], None, 5.0, "refused"),
    "identical cell rows": ([[0, 0, 0], [1.5, 1.5, 1.5]], [[3, 0, 0], [3, 0, 0], [0, 0, 3]], 5.0, "refused"),
    "cell 1e-3 (hang)": ([[0, 0, 0]], (np.eye(3) * 1e-3).tolist(), 5.0, "refused"),
    "cell 0.2 Å (hang)": ([[0, 0, 0]], (np.eye(3) * 0.2).tolist(), 100.0, "refused"),
    "max_dist 300 (16 GB)": (_MO.positions.tolist(), _MO.cell.array.tolist(), 300.0, "refused"),
    # within the bounds, yet an elongated grid that vesin rounds to zero cells along an axis
    "flat molecule 2000 Å": ([[0, 0, 0], [2000, 0, 0], [0, 2000, 0], [1, 1, 0], [2001, 3, 0]], None, 5.0, "pairs"),
    "thin molecule 9e5 Å": ([[0, 0, 0], [1, 1, 1], [9e5, 0, 0], [9e5 + 2, 0, 0]], None, 5.0, "pairs"),
    "slab cell 2000x2000x4": ([[0, 0, 0], [1, 1, 1], [1999, 0.5, 2]], [[2000, 0, 0], [0, 2000, 0], [0, 0, 4]], 5.0,
                              "pairs"),
}

_CHILD = textwrap.dedent("""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))      # 2 GiB: a regression fails, not the machine
    import numpy as np
    from mtpfit import Configuration
    from mtpfit.data.neighbors import neighbor_pairs
    for name, (positions, cell, cutoff, _) in json.loads(sys.argv[1]).items():
        print(json.dumps({"case": name}), flush=True)      # the last case started, if this process dies
        try:
            config = Configuration(positions, [0] * len(positions), cell, source=f"case {name}")
            i, j, v = neighbor_pairs(config, cutoff)
            result = {"pairs": sorted(zip(i.tolist(), j.tolist(), np.round(v, 9).tolist()))}
        except ValueError as err:
            result = {"error": str(err)}
        print(json.dumps({"case": name, **result}), flush=True)
""")


def _brute_force_pairs(positions, cell, cutoff):
    """Every (i, j, r_ij) within the cutoff over the images n ∈ [-3, 3]³ of a periodic cell (none for a molecule)."""
    positions = np.asarray(positions, float)
    shifts = [np.zeros(3)] if cell is None else [(np.array(n) - 3) @ np.asarray(cell, float)
                                                  for n in np.ndindex(7, 7, 7)]
    out = []
    for i, a in enumerate(positions):
        for j, b in enumerate(positions):
            for shift in shifts:
                v = b + shift - a
                if 0 < np.linalg.norm(v) < cutoff:
                    out.append((i, j, np.round(v, 9).tolist()))
    return sorted(out)


@pytest.fixture(scope="module")
def crash_outcomes() -> dict:
    try:
        run = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(CRASH_CASES)], capture_output=True,
                             text=True, timeout=60,
                             env={"PYTHONPATH": str(PYTHON_DIR), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        stdout, failure = run.stdout, (f"died (return code {run.returncode})" if run.returncode else None)
    except subprocess.TimeoutExpired as err:
        stdout, failure = (err.stdout or b"").decode(), "hung (60 s)"
        run = None
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if failure:
        pytest.fail(f"the neighbour-list process {failure} in case {lines[-1]['case'] if lines else '?'!r}: "
                    f"{run.stderr[-2000:] if run else ''}")
    return {line["case"]: line for line in lines if len(line) > 1}


@pytest.mark.parametrize("name", list(CRASH_CASES))
def test_geometry_that_crashed_vesin_is_refused_or_handled(crash_outcomes, name):
    positions, cell, cutoff, expected = CRASH_CASES[name]
    outcome = crash_outcomes[name]
    if expected == "refused":
        assert outcome.get("error", "").startswith(f"case {name}: "), outcome
    else:
        assert "error" not in outcome, outcome
        assert [tuple(p) for p in outcome["pairs"]] == _brute_force_pairs(positions, cell, cutoff)


@pytest.mark.parametrize("cell, message", [
    (np.eye(3) * 1e300, r"cell contain \|x\| = 1e\+300 Å, beyond MAX_COORDINATE = 1e\+06 Å"),
    ([[3, 0, 0], [3, 0, 0], [0, 0, 3]], r"periodic cell vectors \[0, 1, 2\] are linearly dependent"),
    ([[3, 0, 0], [0, 3, 0], [3, 3, 1e-9]], "linearly dependent"),
    (np.eye(3) * 1e-3, "shorter than 0.1 Å"),
])
def test_bad_cells_name_the_configuration(cell, message):
    source = "bad.cfg, configuration 4 (line 40)"
    config = Configuration([[0, 0, 0], [1.5, 1.5, 1.5]], [0, 1], cell, source=source)
    with pytest.raises(ValueError, match=rf"^bad\.cfg, configuration 4 \(line 40\): .*{message}"):
        MTP.read(POT).evaluate(config)


def test_positions_moved_in_place_are_checked_again():
    config = Configuration([[0, 0, 0], [2.5, 0, 0]], [0, 0], source="relaxed")
    config.positions[1, 0] = 1e300
    with pytest.raises(ValueError, match="relaxed: positions contain"):
        neighbor_pairs(config, 5.0)


def test_enlarged_search_radius_gives_the_same_pairs_as_ase():
    """A 1200 Å slab needs a search radius above the cutoff (grid of 242 x 242 x 1 cells); the pairs are those of
    ASE's neighbour list."""
    rng = np.random.default_rng(0)
    positions = np.c_[rng.uniform(0, 1200, (60, 2)), rng.uniform(0, 4, 60)]
    cell = np.diag([1200.0, 1200.0, 4.0])
    assert neighbors._grid_cutoff(neighbors._spans(Configuration(positions, [0] * 60, cell)), 5.0) > 5.0
    i, j, v = neighbor_pairs(Configuration(positions, [0] * 60, cell), 5.0)
    ia, ja, va = neighbor_list("ijD", Atoms("H60", positions=positions, cell=cell, pbc=True), 5.0)
    key = lambda i, j, v: sorted(zip(i.tolist(), j.tolist(), np.round(v, 9).tolist()))  # noqa: E731
    assert len(i) > 20 and key(i, j, v) == key(ia, ja, va)


# -- memory and time guard ------------------------------------------------------------------------------------
def _mo(repeat=3, pbc=(True, True, True)) -> Configuration:
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(repeat)
    return Configuration(atoms.positions, ["Mo"] * len(atoms), atoms.cell.array if any(pbc) else None,
                         pbc=pbc if any(pbc) else None, source="Mo bcc")


@pytest.mark.parametrize("pbc, cutoff", [((True,) * 3, 4.0), ((True,) * 3, 9.0), ((True, True, False), 8.0),
                                         ((False,) * 3, 8.0), ((False,) * 3, 30.0)])
def test_pair_estimate_is_close_to_the_list(pbc, cutoff):
    config = _mo(pbc=pbc)
    actual = len(neighbor_pairs(config, cutoff)[0])
    assert 0.7 * actual < estimated_pairs(config, cutoff) < 1.4 * actual


def test_large_neighbour_list_is_refused_naming_the_configuration(monkeypatch):
    """max_dist = 300 Å took 16 GB and 300 s (refused in the subprocess cases above); here the limit is lowered
    so that a broken guard costs nothing: 54 atoms at 6 Å have ~3100 pairs."""
    monkeypatch.setattr(neighbors, "MAX_PAIRS", 1000)      # the limit is read at every call
    mtp = MTP.from_level(6, species=["Mo"], max_dist=6.0)
    with pytest.raises(ValueError, match=r"^Mo bcc: the neighbour list at a cutoff of 6 Å would hold about "
                                         r"3\.1e\+03 pairs \(57\.3 neighbours for each of 54 atoms\), more than "
                                         r"MAX_PAIRS = 1e\+03"):
        mtp.evaluate(_mo())
    with pytest.raises(ValueError, match="Mo bcc: .*MAX_PAIRS"):
        Objective(mtp, Dataset([_mo()]))
    assert len(neighbor_pairs(_mo(), 3.0)[0]) == 432      # 432 pairs, estimated 387: under the limit


def test_large_training_set_is_refused_before_any_list_is_built(monkeypatch):
    """Each configuration under MAX_PAIRS, their sum over MAX_TRAINING_PAIRS (lowered here: 3 × ~3100 pairs)."""
    monkeypatch.setattr(training_set, "MAX_TRAINING_PAIRS", 5000)
    monkeypatch.setattr(mtp_module, "build_structure", None)   # a list built before refusing would fail here
    data = Dataset([_mo(), _mo(), _mo()], "three cells")
    with pytest.raises(ValueError, match=r"^three cells: at max_dist = 6 Å its 3 configurations would hold about "
                                         r"9\.29e\+03 neighbour pairs, more than MAX_TRAINING_PAIRS = 5e\+03"):
        Objective(MTP.from_level(6, species=["Mo"], max_dist=6.0), data)


# -- warnings: short distances, absurd site energies --------------------------------------------------------
def _pair(distance: float, source="close pair") -> Configuration:
    return Configuration([[0, 0, 0], [distance, 0, 0], [0, 3.5, 0]], [1, 1, 0], source=source)


def _warnings_of(action) -> dict:
    """{category: [message, …]} of every warning ``action()`` issues."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        action()
    out = {}
    for w in record:
        out.setdefault(w.category, []).append(str(w.message))
    return out


def test_distance_below_min_dist_and_absurd_energy_warn_naming_the_configuration():
    mtp = MTP.read(POT)
    issued = _warnings_of(lambda: mtp.evaluate(_pair(0.5)))
    assert issued[ShortDistanceWarning] == ["close pair: atoms 0 and 1 are 0.5000 Å apart, closer than the "
                                            "potential's min_dist = 2 Å, where its radial basis is extrapolated"]
    [absurd] = issued[AbsurdEnergyWarning]        # 0.5 Å apart: the extrapolated radial basis explodes
    assert absurd.startswith("close pair: the site energy of atom 1 is 5.48") and "eV from its isolated" in absurd
    assert _warnings_of(lambda: mtp.evaluate(_pair(2.6))) == {}       # inside the basis: no warning at all


def test_calculator_warns_and_names_the_atoms():
    atoms = Atoms("Ag2Au", positions=[[0, 0, 0], [0.5, 0, 0], [0, 3.5, 0]])
    atoms.calc = MTPCalculator(POT, species=["Au", "Ag", "Cu"])
    issued = _warnings_of(atoms.get_potential_energy)
    assert issued.keys() == {ShortDistanceWarning, AbsurdEnergyWarning}
    assert all(m.startswith("ase.Atoms (3 atoms): ") for messages in issued.values() for m in messages)


def test_training_set_warns_once_with_a_count():
    data = Dataset([_pair(1.5, "a"), _pair(2.6, "b"), _pair(1.2, "c")], "pairs")
    [short] = _warnings_of(lambda: Objective(MTP.read(POT), data))[ShortDistanceWarning]
    assert short.startswith("2 of 3 configurations of pairs have atoms closer than the "
                                            "potential's min_dist = 2 Å; the closest: c: atoms 0 and 1 are 1.2000")


# -- non-finite predictions and losses -------------------------------------------------------------------------
def _overflowing(kind: str, value: float = 1e300) -> MTP:
    """The reader refuses such files, so the potential is built in memory."""
    mtp = MTP.read(POT)
    if kind == "scaling":
        return MTP(mtp.basis.with_changes(scaling=value), mtp.theta, mtp.species)
    theta = mtp.theta.copy()
    theta[mtp.blocks[kind].start] = value
    return mtp.copy(theta)


@pytest.mark.parametrize("kind, value", [("scaling", 1e300), ("radial", 1e300), ("radial", -1e300)])
def test_non_finite_predictions_name_the_configuration(kind, value):
    mtp = _overflowing(kind, value)
    frames = read_cfg(FRAMES)[:3]
    with pytest.raises(FloatingPointError, match=r"ref10\.cfg, configuration 0 \(line 1\): the predicted .* "
                                                 r"not finite"):
        mtp.evaluate(frames[0])
    symbols = np.array(["Au", "Ag", "Cu"])[frames[0].species].tolist()
    atoms = Atoms(symbols, positions=frames[0].positions, cell=frames[0].cell, pbc=True)
    atoms.calc = MTPCalculator(mtp, species=["Au", "Ag", "Cu"])
    with pytest.raises(FloatingPointError, match=r"ase\.Atoms .*not finite"):
        atoms.get_forces()
    with pytest.raises(FloatingPointError, match=r"ref10\.cfg, configuration 0 \(line 1\): the prediction is "
                                                 r"not finite"):
        Objective(mtp, Dataset(frames)).predict()


def test_finite_but_absurd_prediction_warns():
    """A moment coefficient of 1e300 gives finite energies of ~1e301 eV: a warning, not an error."""
    mtp = _overflowing("moment", -1e300)
    with pytest.warns(AbsurdEnergyWarning, match=r"configuration 0 \(line 1\): the site energy of atom \d+ is "
                                                  r"-1\.\d+e\+300 eV"):
        assert np.isfinite(mtp.evaluate(read_cfg(FRAMES)[0]).energy)


def test_overflowing_loss_is_inf_and_line_searches_back_off():
    """θ with 1e308 gave Objective.fun = NaN, which scipy's strong-Wolfe search accepted as a step (α = 1024,
    f = NaN); as +inf it is rejected."""
    mtp = MTP.read(POT)
    objective = Objective(mtp, Dataset(read_cfg(FRAMES)[:3]))
    x = mtp.theta.copy()
    x[mtp.blocks["moment"].start] = 1e308
    assert objective.fun(x) == np.inf
    g = objective.jac(mtp.theta)
    p = -g / np.linalg.norm(g) * 1e100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # scipy's LineSearchWarning
        alpha, *_, f_new, _, _ = scipy.optimize.line_search(objective.fun, objective.jac, mtp.theta, p, gfk=g,
                                                            old_fval=objective.fun(mtp.theta), maxiter=10)
    assert alpha is None or np.isfinite(f_new)
    assert np.isfinite(objective.fun(mtp.theta))        # the cache moved on


# -- mini-batch indices, species labels ------------------------------------------------------------------------
@pytest.mark.parametrize("batch, error, message", [
    ([5], IndexError, r"mini-batch index 5 is outside the 3 configurations of dataset \(valid: 0 … 2\)"),
    ([0, -1], IndexError, r"index -1 is outside .*valid: 0 … 2"),
    ([0.5], ValueError, "integer configuration indices"),
    ([], ValueError, "non-empty"),
])
def test_bad_mini_batch_is_refused(batch, error, message):
    mtp = MTP.read(POT)
    objective = Objective(mtp, Dataset(read_cfg(FRAMES)[:3]))
    with pytest.raises(error, match=message):
        objective.fun_and_jac(mtp.theta, batch)
    assert objective.n_evaluations == 0
    assert np.isfinite(objective.fun_and_jac(mtp.theta, [2, 0])[0])


def test_species_labels_accept_integers_and_their_strings():
    assert species_labels([0, 1, 2]) == [0, 1, 2]
    assert species_labels(["0", " 1", np.int64(2)]) == [0, 1, 2]
    assert all(type(s) is int for s in species_labels([np.int32(3), "4"]))
    assert species_labels(["Mo", " W "]) == ["Mo", "W"]
    for bad in (None, 1.5, True):
        with pytest.raises(TypeError, match="element symbol or an integer"):
            species_labels([bad])
    with pytest.raises(ValueError, match="empty"):
        species_labels(["Mo", " "])
    mtp = MTP.from_level(6, species=["0", "1", "2"])
    assert mtp.species == [0, 1, 2]
    assert np.isfinite(mtp.evaluate(read_cfg(FRAMES)[0]).energy)     # .cfg types are integers
    with pytest.raises(ValueError, match="distinct"):
        MTP.from_level(6, species=[0, "0"])
