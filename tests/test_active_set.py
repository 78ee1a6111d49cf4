"""MaxVol active set and extrapolation grade (mtpfit.active), on random matrices and the bundled Mo set."""
import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

import mtpfit
from mtpfit import Configuration, Dataset
from mtpfit.active import ActiveSet, active_set_path, atom_grades, build_active_set, grade, grow, maxvol, select
from mtpfit.datasets import load_bundled
from mtpfit.io import FormatError

# a few Mo pairs (and the hot cells' pairs) sit below the potential's min_dist; that warning is not under test
pytestmark = pytest.mark.filterwarnings("ignore:.*closer than the potential's min_dist")


@pytest.fixture(scope="module")
def mo():
    train, test = load_bundled("mlearn-Mo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few Mo pairs sit below min_dist: ShortDistanceWarning
        mtp = mtpfit.fit(train=train, validation=test, level=8, max_iter=15, output=None, threads=2,
                         quiet=True, log=lambda line: None).mtp
    return mtp, train, test


@pytest.fixture(scope="module")
def active(mo):
    mtp, train, _ = mo
    return build_active_set(mtp, train, n_threads=2)


@pytest.fixture(scope="module")
def active_atoms(mo):
    mtp, train, _ = mo
    return build_active_set(mtp, train, n_threads=2, tol=1.0 + 1e-10, mode="neighbourhood")


def _candidates(test, seed=5):
    """Two test configurations as they are, and four strained or hot ones (γ 1e2–1e3 per atom at level 8)."""
    rng = np.random.default_rng(seed)
    return Dataset([test[1], _strained(test[1], 1.1), _hot(test[2], rng), test[5], _strained(test[4], 0.9),
                    _hot(test[6], rng)], "candidates")


def _strained(c, factor):
    return Configuration(positions=c.positions * factor, species=c.species, cell=c.cell * factor, pbc=c.pbc,
                         source=f"{c.source} strained {factor}")


def _hot(c, rng, sigma=0.3):
    return Configuration(positions=c.positions + rng.normal(0.0, sigma, c.positions.shape), species=c.species,
                         cell=c.cell, pbc=c.pbc, source=f"{c.source} hot")


def _index(dataset, source):
    return [c.source for c in dataset].index(source)


def _abs_det(M):
    return np.exp(np.linalg.slogdet(M)[1])


# maxvol on plain matrices ------------------------------------------------------------------------------------
def test_maxvol_is_a_local_maximum():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(60, 6)) * np.logspace(0, -3, 6)
    tol = 1.001
    indices, B = maxvol(A, tol=tol)
    assert len(set(indices.tolist())) == 6
    np.testing.assert_allclose(B, A @ np.linalg.inv(A[indices]), atol=1e-10)
    np.testing.assert_allclose(B[indices], np.eye(6), atol=1e-10)
    volume = _abs_det(A[indices])
    # every single swap, by explicit determinants, gains at most the factor tol
    for i in range(len(A)):
        for j in range(6):
            swapped = indices.copy()
            swapped[j] = i
            assert _abs_det(A[swapped]) <= tol * volume * (1 + 1e-10)
    assert volume > _abs_det(A[:6])  # the swaps did something from a naive start
    with pytest.warns(RuntimeWarning, match="maxvol stopped after 0 swaps"):
        maxvol(A, tol=tol, max_iter=0)


def test_maxvol_refuses_rank_deficiency():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 5))
    with pytest.raises(ValueError, match="rank 3 < 5"):
        maxvol(A)
    with pytest.raises(ValueError, match="at least as many rows"):
        maxvol(np.ones((3, 4)))


def test_grow_updates_the_inverse_and_the_volume():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(80, 5))
    indices, _ = maxvol(A)
    rows = A[indices]
    candidates = 3.0 * rng.normal(size=(20, 5))  # mostly outside the span of A's maxvol set
    before = np.abs(candidates @ np.linalg.inv(rows)).max(axis=1)
    chosen, new_rows, inverse, origin = grow(rows, np.linalg.inv(rows), candidates, threshold=1.5, max_new=4)
    assert 1 <= len(chosen) <= 4
    assert chosen[0] == np.argmax(before)
    np.testing.assert_allclose(inverse, np.linalg.inv(new_rows), rtol=0, atol=1e-10 * np.abs(inverse).max())
    np.testing.assert_array_equal(new_rows[origin >= 0], candidates[origin[origin >= 0]])
    assert set(chosen.tolist()) == set(origin[origin >= 0].tolist())
    assert _abs_det(new_rows) > _abs_det(rows) * 1.5
    # without a limit it stops only when no candidate exceeds the threshold
    _, _, inverse, _ = grow(rows, np.linalg.inv(rows), candidates, threshold=1.5)
    assert np.abs(candidates @ inverse).max() <= 1.5 + 1e-10
    with pytest.raises(ValueError, match="threshold must be >= 1"):
        grow(rows, np.linalg.inv(rows), candidates, threshold=0.5)


def test_grow_limits_the_groups_not_the_swaps():
    """With groups (atoms of configurations) max_new bounds the groups among the members; swaps go on inside them,
    so no row of a member group is left above the threshold."""
    rng = np.random.default_rng(6)
    A = rng.normal(size=(80, 6))
    indices, _ = maxvol(A)
    rows = A[indices]
    candidates = 3.0 * rng.normal(size=(40, 6))
    groups = np.repeat(np.arange(10), 4) * 7  # any labels, not 0 … G−1
    for limit in (1, 2, 3):
        chosen, new_rows, inverse, origin = grow(rows, np.linalg.inv(rows), candidates, threshold=1.2,
                                                 max_new=limit, groups=groups)
        members = set(groups[origin[origin >= 0]].tolist())
        assert len(members) == limit and set(groups[chosen].tolist()) == members
        assert len(chosen) > limit  # more rows than groups: the loop went on inside them
        inside = np.isin(groups, list(members))
        assert np.abs(candidates[inside] @ inverse).max() <= 1.2 + 1e-10
        assert np.abs(candidates[~inside] @ inverse).max() > 1.2  # the limit, not the threshold, stopped it
        np.testing.assert_allclose(inverse, np.linalg.inv(new_rows), rtol=0, atol=1e-10 * np.abs(inverse).max())
    _, _, inverse, _ = grow(rows, np.linalg.inv(rows), candidates, threshold=1.2, groups=groups)
    assert np.abs(candidates @ inverse).max() <= 1.2 + 1e-10
    with pytest.raises(ValueError, match="one group per candidate"):
        grow(rows, np.linalg.inv(rows), candidates, groups=groups[:-1])
    with pytest.raises(ValueError, match="max_new must be >= 0"):
        grow(rows, np.linalg.inv(rows), candidates, max_new=-1)


# the grade of a Mo potential --------------------------------------------------------------------------------
def test_members_grade_one_and_training_set_interpolates(mo):
    mtp, train, _ = mo
    active = build_active_set(mtp, train, n_threads=2, tol=1.0 + 1e-10)
    g = grade(active, mtp, train, n_threads=2)
    members = np.array([_index(train, s) for s in active.sources])
    assert len(set(members.tolist())) == active.rows.shape[0] == 10  # S + M of level 8, one species
    np.testing.assert_allclose(g[members], 1.0, atol=1e-10)
    assert g.max() <= 1.0 + 1e-10


def test_strained_and_hot_configurations_extrapolate(mo, active):
    mtp, _, test = mo
    rng = np.random.default_rng(4)
    g_test = grade(active, mtp, test, n_threads=2)
    assert g_test.shape == (len(test),)
    far = Dataset([_strained(test[0], 1.1), _strained(test[3], 1.1), _hot(test[0], rng), _hot(test[3], rng)])
    g = grade(active, mtp, far, n_threads=2)
    assert np.all(g > 1.5), g
    assert np.all(g > g_test.max())


def test_select_adds_the_extrapolating_candidates(mo, active):
    mtp, train, test = mo
    rng = np.random.default_rng(5)
    candidates = Dataset([test[1], _strained(test[1], 1.1), _hot(test[2], rng), test[5],
                          _strained(test[4], 0.9), _hot(test[6], rng)])
    before = grade(active, mtp, candidates, n_threads=2)
    chosen, updated = select(active, mtp, candidates, threshold=1.5, max_new=2, n_threads=2)
    assert 1 <= len(chosen) <= 2
    assert chosen[0] == np.argmax(before)
    assert np.all(before[chosen] > 1.5)
    np.testing.assert_allclose(updated.inverse, np.linalg.inv(updated.rows), rtol=0,
                               atol=1e-10 * np.abs(updated.inverse).max())
    for k in chosen:
        assert candidates[int(k)].source in updated.sources
    after = grade(updated, mtp, candidates, n_threads=2)
    np.testing.assert_allclose(after[chosen], 1.0, atol=1e-10)
    # the incremental set grades like one rebuilt from its rows
    rebuilt = ActiveSet(updated.digest, updated.rows.copy(), np.linalg.inv(updated.rows), updated.sources,
                         updated.columns)
    np.testing.assert_allclose(after, grade(rebuilt, mtp, candidates, n_threads=2), rtol=1e-10)
    np.testing.assert_allclose(grade(updated, mtp, train, 2), grade(rebuilt, mtp, train, 2), rtol=1e-10)
    # the input set is not changed; with no limit nothing above the threshold is left
    np.testing.assert_allclose(grade(active, mtp, candidates, n_threads=2), before)
    _, full = select(active, mtp, candidates, threshold=1.5, n_threads=2)
    assert grade(full, mtp, candidates, n_threads=2).max() <= 1.5 + 1e-10


def test_save_load_round_trip_and_refusal(mo, active, tmp_path):
    mtp, train, test = mo
    path = active_set_path(tmp_path / "trained.mtp")
    assert path.name == "trained.mtp.als.npz"
    active.save(path)
    loaded = ActiveSet.load(path, mtp)
    np.testing.assert_array_equal(loaded.rows, active.rows)
    assert loaded.sources == active.sources and loaded.digest == active.digest
    np.testing.assert_allclose(grade(loaded, mtp, test, 2), grade(active, mtp, test, 2), rtol=1e-12)
    other = mtp.copy(mtp.theta * 1.01)
    with pytest.raises(ValueError, match="trained.mtp.als.npz"):
        ActiveSet.load(path, other)
    with pytest.raises(ValueError, match="another potential"):
        grade(active, other, test)
    not_active = tmp_path / "other.npz"
    np.savez(not_active, rows=active.rows)
    with pytest.raises(FormatError, match="other.npz"):
        ActiveSet.load(not_active, mtp)


def test_exactly_dependent_columns_are_left_out():
    """Columns that are exact combinations of others (identities among contractions) cannot enter a square
    invertible submatrix: they are found and dropped, weak but real ones are kept."""
    from mtpfit.active import independent_columns

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, 6))
    rows[:, 2] *= 1e-6                                   # weak, independent: kept
    rows = np.column_stack([rows, rows[:, 0] - 2 * rows[:, 3], np.zeros(50)])  # exact identity, zero column
    np.testing.assert_array_equal(independent_columns(rows), [0, 1, 2, 3, 4, 5])


def test_grade_and_select_commands_on_the_bundled_mo_set(tmp_path, capsys):
    """`mtpfit grade` and `mtpfit select` at level 16 (whose moment basis has an exact identity among five
    basis functions) on the bundled Mo training and test sets; their .cfg outputs are read back."""
    from mtpfit.cli import main
    from mtpfit.io import read_configurations

    folder = Path(mtpfit.__file__).parent / "datasets" / "mlearn_Mo"
    train, test = str(folder / "training.json.gz"), str(folder / "test.json.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        potential = mtpfit.fit(level=16, max_iter=5, output=None, threads=2).mtp
    pot = tmp_path / "pot.mtp"
    potential.write(pot)
    order = ["--stress-order", "xx yy zz xy xz yz"]
    graded = tmp_path / "graded.cfg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["grade", str(pot), train, test, "--output", str(graded), *order]) == 0
        out = capsys.readouterr().out
        assert (tmp_path / "pot.mtp.als.npz").exists() and "active set of 92 configurations" in out
        back = read_configurations(graded, species=["Mo"])
        grades = np.array([float(c.features["MV_grade"]) for c in back])
        assert len(back) == 23 and np.all(grades > 0)
        # the training set itself grades ≤ 1 (maxvol's tolerance 1.001)
        assert main(["grade", str(pot), train, train, *order]) == 0
        printed = [float(line.split()[0]) for line in capsys.readouterr().out.splitlines() if "configuration" in line
                   and line.split()[0][0].isdigit()]
        assert len(printed) == 194 and max(printed) <= 1.001 + 1e-9
        # per atom: the file's configuration-mode set is replaced by a neighbourhood-mode one
        assert main(["grade", str(pot), train, test, "--mode", "neighbourhood", *order]) == 0
        assert "atoms' neighbourhoods of training.json.gz" in capsys.readouterr().out
        assert ActiveSet.load(tmp_path / "pot.mtp.als.npz", potential).mode == "neighbourhood"
        # per atom into extxyz: each frame's γ is its atoms' largest; read back by the package's reader
        per_atom = tmp_path / "graded.extxyz"
        assert main(["grade", str(pot), train, test, "--mode", "neighbourhood", "--output", str(per_atom),
                     *order]) == 0
        import ase.io

        frames = ase.io.read(per_atom, ":")
        assert len(frames) == 23
        # (extxyz prints the per-atom arrays to 8 decimals)
        assert all(f.info["MV_grade"] == pytest.approx(f.arrays["nbh_grades"].max(), abs=1e-7) for f in frames)
        assert len(read_configurations(per_atom)) == 23
        # per atom into .cfg, as MLIP writes it: the AtomData column nbh_grades, the configuration's MV_grade
        per_atom_cfg = tmp_path / "graded_atoms.cfg"
        assert main(["grade", str(pot), train, test, "--mode", "neighbourhood", "--output", str(per_atom_cfg),
                     *order]) == 0
        header = next(line for line in per_atom_cfg.read_text().splitlines() if "AtomData" in line)
        assert header.split()[-1] == "nbh_grades"
        cfg_back = read_configurations(per_atom_cfg, species=["Mo"])
        from mtpfit.io import read_files

        test_set = read_files([test], None, "xx yy zz xy xz yz", species=["Mo"])
        expected = atom_grades(ActiveSet.load(tmp_path / "pot.mtp.als.npz", potential), potential, test_set,
                               n_threads=2)
        assert len(cfg_back) == len(expected) == 23
        for c, want in zip(cfg_back, expected):
            # .cfg keeps every bit (repr); the tolerance only allows for another thread count than the command's
            np.testing.assert_allclose(c.atom_data["nbh_grades"], want, rtol=1e-12, atol=0)
            assert float(c.features["MV_grade"]) == c.atom_data["nbh_grades"].max()
        assert max(float(c.features["MV_grade"]) for c in cfg_back) > 0
        # candidates outside the training set: the test configurations strained by 10 %
        from mtpfit.io import write_cfg

        strained = [dataclasses.replace(c, positions=1.1 * c.positions, cell=1.1 * c.cell) for c in back]
        candidates = tmp_path / "candidates.cfg"
        write_cfg(candidates, strained, species_order=["Mo"])
        selected = tmp_path / "selected.cfg"
        assert main(["select", str(pot), train, str(candidates), "--max", "3", "--output", str(selected),
                     *order]) == 0
    chosen = read_configurations(selected)
    assert len(chosen) == 3
    assert "selected" in capsys.readouterr().out


def test_calculator_reports_the_grade(tmp_path, mo, active):
    """The ASE calculator with the active set gives each structure's γ: ≤ 1 for a training configuration, > 1
    strained; without an active set the property is refused."""
    from ase.calculators.calculator import PropertyNotImplementedError

    from mtpfit import MTPCalculator

    from ase import Atoms

    mtp, train, _ = mo
    path = tmp_path / "pot.mtp.als.npz"
    active.save(path)
    c = train[_index(train, active.sources[0])]  # a member of the active set: γ = 1
    atoms = Atoms(c.species.tolist(), positions=c.positions, cell=c.cell, pbc=True)
    atoms.calc = MTPCalculator(mtp, active_set=path, n_threads=1)
    assert atoms.calc.get_property("extrapolation_grade", atoms) == pytest.approx(1.0, abs=1e-9)
    atoms.set_cell(1.1 * atoms.cell, scale_atoms=True)
    assert atoms.calc.get_property("extrapolation_grade", atoms) > 1.5
    atoms.calc = MTPCalculator(mtp)
    with pytest.raises(PropertyNotImplementedError, match="active_set"):
        atoms.calc.get_property("extrapolation_grade", atoms)


def test_calculator_reports_atom_grades_in_neighbourhood_mode(mo, active, active_atoms):
    """With a neighbourhood-mode set the calculator gives each atom's γ (= atom_grades), the configuration's γ is
    their largest, and kept candidates carry them; a configuration-mode set refuses the per-atom property."""
    from ase import Atoms
    from ase.calculators.calculator import PropertyNotImplementedError

    from mtpfit import MTPCalculator

    mtp, _, test = mo
    c = _strained(test[4], 1.1)
    atoms = Atoms(c.species.tolist(), positions=c.positions, cell=c.cell, pbc=True)
    atoms.calc = calc = MTPCalculator(mtp, active_set=active_atoms, gamma_select=1.0, n_threads=1)
    per_atom = atoms.calc.get_property("extrapolation_grades", atoms)
    expected = atom_grades(active_atoms, mtp, Dataset([c], "one"), n_threads=1)[0]
    assert per_atom.shape == (len(atoms),)
    np.testing.assert_allclose(per_atom, expected, rtol=1e-12)
    assert atoms.calc.get_property("extrapolation_grade", atoms) == per_atom.max() > 1.0
    np.testing.assert_array_equal(calc.extrapolating[0].arrays["extrapolation_grades"], per_atom)
    atoms.calc = MTPCalculator(mtp, active_set=active, n_threads=1)
    with pytest.raises(PropertyNotImplementedError, match="neighbourhood-mode"):
        atoms.calc.get_property("extrapolation_grades", atoms)


def _one_atom_cells(count, rng, spread):
    """Primitive bcc Mo cells (one atom each) under random strains."""
    base = 3.16 * 0.5 * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])
    cells = []
    for k in range(count):
        strain = np.eye(3) + rng.uniform(-spread, spread, (3, 3))
        cells.append(Configuration(positions=np.zeros((1, 3)), species=["Mo"], cell=base @ strain, pbc=[True] * 3,
                                   source=f"one-atom cell {k}"))
    return Dataset(cells, "one-atom cells")


def test_neighbourhood_mode_grades_atoms(mo):
    """One row per atom: members grade 1, every atom of the training set ≤ tol, strained atoms extrapolate; a
    configuration's grade is the largest of its atoms'; the file keeps the mode."""
    from mtpfit.active import atom_grades

    mtp, train, test = mo
    active = build_active_set(mtp, train, n_threads=2, tol=1.0 + 1e-10, mode="neighbourhood")
    assert active.mode == "neighbourhood" and all(", atom " in s for s in active.sources)
    per_atom = atom_grades(active, mtp, train, n_threads=2)
    assert sum(len(a) for a in per_atom) == train.n_atoms
    assert max(a.max() for a in per_atom) <= 1.0 + 1e-9
    for source in active.sources[:3]:
        config, atom = source.rsplit(", atom ", 1)
        assert per_atom[_index(train, config)][int(atom)] == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_array_equal(grade(active, mtp, train, n_threads=2), [a.max() for a in per_atom])
    strained = Dataset([_strained(c, 1.15) for c in test], "strained")
    assert np.all(grade(active, mtp, strained, n_threads=2) > 1.0)


def test_modes_agree_on_one_atom_cells(mo, tmp_path):
    """On cells of one atom a configuration's row is its atom's row: both modes choose the same set and grade
    alike, also after a save and load."""
    mtp, _, _ = mo
    rng = np.random.default_rng(3)
    train, new = _one_atom_cells(60, rng, 0.12), _one_atom_cells(20, rng, 0.16)
    per_configuration = build_active_set(mtp, train, n_threads=1)
    per_atom = build_active_set(mtp, train, n_threads=1, mode="neighbourhood")
    np.testing.assert_allclose(per_atom.rows, per_configuration.rows, rtol=1e-12, atol=1e-14)
    path = tmp_path / "cells.als.npz"
    per_atom.save(path)
    loaded = ActiveSet.load(path, mtp)
    assert loaded.mode == "neighbourhood"
    np.testing.assert_allclose(grade(loaded, mtp, new, n_threads=1), grade(per_configuration, mtp, new, n_threads=1),
                               rtol=1e-10)


def test_calculator_keeps_candidates_and_breaks(tmp_path, mo, active):
    """gamma_select keeps the structures to label; gamma_break ends the run with ExtrapolationError."""
    from ase import Atoms

    from mtpfit import MTPCalculator
    from mtpfit.calculator import ExtrapolationError

    mtp, train, _ = mo
    c = train[_index(train, active.sources[0])]
    atoms = Atoms(c.species.tolist(), positions=c.positions, cell=c.cell, pbc=True)
    atoms.calc = calc = MTPCalculator(mtp, active_set=active, gamma_select=1.2, gamma_break=50.0, n_threads=1)
    atoms.get_potential_energy()
    assert calc.extrapolating == []
    atoms.set_cell(1.1 * atoms.cell, scale_atoms=True)
    gamma = atoms.calc.get_property("extrapolation_grade", atoms)
    assert len(calc.extrapolating) == 1 and calc.extrapolating[0].info["extrapolation_grade"] == gamma > 1.2
    atoms.set_cell(0.8 / 1.1 * atoms.cell, scale_atoms=True)   # squeezed far outside: γ in the hundreds
    with pytest.raises(ExtrapolationError, match="gamma_break 50") as caught:
        atoms.get_potential_energy()
    assert caught.value.grade > 50.0
    with pytest.raises(ValueError, match="need the potential's active_set"):
        MTPCalculator(mtp, gamma_break=10.0)


def test_configuration_rows_are_the_energy_gradient_per_atom(mo):
    """The configuration row (mean of the atoms' rows from the core) is ∂E/∂(ξ, c) / N as the objective's
    adjoint pass gives it."""
    from mtpfit import Objective
    from mtpfit.active import configuration_rows

    mtp, _, test = mo
    gradients = Objective(mtp, test, n_threads=2).energy_gradients()
    linear = np.concatenate([gradients[:, mtp.blocks["species"]], gradients[:, mtp.blocks["moment"]]], axis=1)
    atoms = np.array([c.n_atoms for c in test], dtype=float)[:, None]
    np.testing.assert_allclose(configuration_rows(mtp, test, n_threads=2), linear / atoms, rtol=1e-12,
                               atol=1e-14 * np.abs(linear / atoms).max())


def test_select_in_neighbourhood_mode_adds_atoms_and_their_configurations(mo, active_atoms):
    """Atoms are swapped in, their configurations are selected: the swapped-in atoms grade 1, no candidate atom is
    left above the threshold (with max_new: none of a selected configuration), the sources name the atoms."""
    from mtpfit.active import atom_grades, neighbourhood_rows

    mtp, _, test = mo
    candidates = _candidates(test)
    threshold = 1.5
    before = atom_grades(active_atoms, mtp, candidates, n_threads=2)
    assert sum(a.max() > threshold for a in before) >= 3  # so that max_new = 1, 2 bind
    atom_rows, owner = neighbourhood_rows(mtp, candidates, n_threads=2)
    for limit in (None, 1, 2):
        chosen, updated = select(active_atoms, mtp, candidates, threshold=threshold, max_new=limit, n_threads=2)
        assert updated.mode == "neighbourhood" and len(chosen) == len(set(chosen.tolist())) >= 1
        assert limit is None or len(chosen) <= limit
        assert np.argmax([a.max() for a in before]) == chosen[0]  # the atom of largest grade comes first
        np.testing.assert_allclose(updated.inverse, np.linalg.inv(updated.rows), rtol=0,
                                   atol=1e-10 * np.abs(updated.inverse).max())
        after = atom_grades(updated, mtp, candidates, n_threads=2)
        new = [s for s in updated.sources if s not in active_atoms.sources]
        owners = set()
        for source in new:
            config, atom = source.rsplit(", atom ", 1)
            k, i = _index(candidates, config), int(atom)
            owners.add(k)
            assert after[k][i] == pytest.approx(1.0, abs=1e-10)
            # the member's row is that atom's row
            row = atom_rows[np.flatnonzero(owner == k)[i], updated.columns]
            np.testing.assert_array_equal(updated.rows[updated.sources.index(source)], row)
        assert owners == set(chosen.tolist())
        assert max(after[int(k)].max() for k in chosen) <= threshold + 1e-10
        left = max(a.max() for a in after)
        assert left <= threshold + 1e-10 if limit is None else left > threshold  # the limit stopped it
    # the input set is unchanged
    for a, b in zip(atom_grades(active_atoms, mtp, candidates, n_threads=2), before):
        np.testing.assert_array_equal(a, b)


def test_select_command_writes_the_updated_set_only_when_asked(mo, tmp_path, capsys):
    """`mtpfit select` leaves POT.als.npz as TRAIN's set without --update; with it (or --active-set-output) the
    updated set is written, loads back, grades what was swapped in at 1 and its inverse is the rows' inverse; the
    file's mode is used, another --mode is refused."""
    from mtpfit.active import atom_grades
    from mtpfit.cli import main
    from mtpfit.io import read_configurations, write_cfg

    mtp, _, test = mo
    train = str(Path(mtpfit.__file__).parent / "datasets" / "mlearn_Mo" / "training.json.gz")
    order = ["--stress-order", "xx yy zz xy xz yz"]
    candidates = _candidates(test)
    cand = tmp_path / "candidates.cfg"
    write_cfg(cand, list(candidates), species_order=["Mo"])
    candidates = read_configurations(cand, species=["Mo"])  # with the sources the command sees
    for mode in ("neighbourhood", "configuration"):
        pot = tmp_path / f"{mode}.mtp"
        mtp.write(pot)
        saved = active_set_path(pot)
        selected = tmp_path / f"{mode}_selected.cfg"
        common = [str(pot), train, str(cand), "--threshold", "1.5", "--max", "2", "--output", str(selected),
                  "--threads", "2", *order]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(["select", *common, "--mode", mode]) == 0
            trains = saved.read_bytes()  # built from TRAIN by this first call, not updated
            built = ActiveSet.load(saved, mtp)
            assert built.mode == mode and not any(str(cand) in s for s in built.sources)
            assert main(["select", *common]) == 0  # the file's mode
            assert saved.read_bytes() == trains
            elsewhere = tmp_path / f"{mode}_elsewhere.als.npz"
            assert main(["select", *common, "--active-set-output", str(elsewhere)]) == 0
            assert saved.read_bytes() == trains
            assert main(["select", *common, "--update"]) == 0
        out = capsys.readouterr().out
        assert f"written to {saved}" in out and f"written to {elsewhere}" in out
        # the written configurations are new sources: found among the candidates by their positions
        chosen = [next(k for k, c in enumerate(candidates) if np.array_equal(c.positions, written.positions))
                  for written in read_configurations(selected, species=["Mo"])]
        assert 1 <= len(chosen) <= 2
        expected_chosen, expected = select(built, mtp, candidates, threshold=1.5, max_new=2, n_threads=2)
        assert chosen == expected_chosen.tolist()
        for path in (saved, elsewhere):
            loaded = ActiveSet.load(path, mtp)
            assert loaded.mode == mode and loaded.sources == expected.sources
            np.testing.assert_allclose(loaded.rows, expected.rows, rtol=1e-12, atol=0)
            np.testing.assert_allclose(loaded.inverse, expected.inverse, rtol=0,
                                       atol=1e-10 * np.abs(expected.inverse).max())
            picked = Dataset([candidates[k] for k in chosen], "chosen")
            if mode == "configuration":
                np.testing.assert_allclose(grade(loaded, mtp, picked, n_threads=2), 1.0, atol=1e-10)
            else:
                per_atom = atom_grades(loaded, mtp, candidates, n_threads=2)
                swapped = [s.rsplit(", atom ", 1) for s in loaded.sources if s not in built.sources]
                assert {_index(candidates, c) for c, _ in swapped} == set(chosen)
                for config, atom in swapped:
                    assert per_atom[_index(candidates, config)][int(atom)] == pytest.approx(1.0, abs=1e-10)
        # later commands use the updated file as it is (same potential: no rebuild)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(["grade", str(pot), train, str(cand), *order]) == 0
        assert "written to" not in capsys.readouterr().out
    # the file is neighbourhood-mode: select refuses configuration mode rather than replace it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pot = tmp_path / "neighbourhood.mtp"
        updated = active_set_path(pot).read_bytes()
        assert main(["select", str(pot), train, str(cand), "--mode", "configuration", *order]) == 2
    assert "neighbourhood-mode active set and --mode configuration" in capsys.readouterr().err
    assert active_set_path(pot).read_bytes() == updated
