"""The active-learning loop (mtpfit.active.learn) on EMT Cu: it labels, retrains and ends, and a killed loop
resumes without computing any label twice."""
import csv
import json
import re

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mtpfit import Dataset
from mtpfit.active.learn import LearningConfig, learn, resolve_labeller
from mtpfit.io.cfg import read_cfg

#: calculate() calls of every CountingEMT of this process
CALLS = {"n": 0}


class CountingEMT(EMT):
    """EMT that counts its calculations, so a test can see whether a label was computed again."""

    def calculate(self, *args, **kwargs):
        CALLS["n"] += 1
        super().calculate(*args, **kwargs)


class Killed(Exception):
    """Stands for the loop being killed while it labels."""


def killing_after(n):
    """A labeller that raises Killed instead of starting its (n + 1)-th label."""
    made = {"n": 0}

    def factory():
        if made["n"] == n:
            raise Killed
        made["n"] += 1
        return CountingEMT()

    return factory


def seeds():
    structures = []
    for k in range(3):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.03 * k, cubic=True)  # 4 atoms
        atoms.rattle(0.05, seed=k)
        structures.append(atoms)
    return structures


def settings(folder, **changes):
    return {"seeds": seeds(), "labeller": CountingEMT, "level": 6, "max_iter": 20, "temperatures": [300.0, 1500.0],
            "steps": 20, "timestep": 5.0, "grade_every": 2, "max_cycles": 2, "max_selected": 3, "threads": 1,
            "output": str(folder), **changes}


def labels_of(folder):
    return read_cfg(folder / "labelled.cfg", species=["Cu"])


def same_configurations(a, b):
    return len(a) == len(b) and all(np.array_equal(x.positions, y.positions) and x.energy == y.energy
                                    and np.array_equal(x.forces, y.forces) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted loop and the labels it computed."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    before = CALLS["n"]
    lines = []
    result = learn(settings(folder), log=lines.append)
    return folder, result, CALLS["n"] - before, lines


def test_loop_labels_retrains_and_ends(reference):
    folder, result, calls, _ = reference
    rows = result.rows
    assert result.reason == "max_cycles" and [row["cycle"] for row in rows] == [0, 1, 2]
    selected = [row["selected"] for row in rows[:2]]
    assert all(n >= 1 for n in selected), "EMT Cu at 1500 K from a 3-seed potential must extrapolate"
    assert [row["labelled"] for row in rows] == [3, 3 + selected[0], 3 + sum(selected)]
    assert len(result.labelled) == 3 + sum(selected) == calls  # every label computed once, the seeds' too
    assert all(row["max_gamma"] > 2.0 and row["candidates"] >= row["selected"] for row in rows[:2])
    stored = labels_of(folder)
    assert same_configurations(stored, list(result.labelled))
    assert [c.group for c in stored[:3]] == ["seed"] * 3 and stored[3].group == "cycle000"
    # labels are EMT's (energy, forces, stress as PlusStress −σV)
    atoms = stored[-1].to_ase()
    atoms.calc = EMT()
    assert np.allclose(atoms.get_forces(), stored[-1].forces, atol=1e-10)
    assert np.allclose(-atoms.get_stress(voigt=False) * atoms.get_volume(), stored[-1].plus_stress, atol=1e-10)
    with open(folder / "summary.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["labelled"]) for r in table] == [row["labelled"] for row in rows]
    assert (folder / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.potential.exists() and (folder / "cycle000.mtp.als.npz").exists()
    assert result.mtp.species == ["Cu"]
    # every graded frame of a cycle is kept with its γ, and the selected ones are among them
    frames = read_cfg(folder / "cycle000_frames.cfg", species=["Cu"])
    assert len(frames) == rows[0]["frames"]
    grades = [float(f.features["MV_grade"]) for f in frames]
    assert sum(g > 2.0 for g in grades) == rows[0]["candidates"] and max(grades) == pytest.approx(rows[0]["max_gamma"])


def test_finished_loop_reruns_without_work(reference):
    folder, result, _, _ = reference
    before = CALLS["n"]
    again = learn(settings(folder), log=None)
    assert CALLS["n"] == before and again.reason == result.reason
    assert same_configurations(list(again.labelled), list(result.labelled))


@pytest.mark.parametrize("kill_after", [1, 4], ids=["among-seeds", "among-selected"])
def test_killed_loop_resumes_without_relabelling(reference, tmp_path, kill_after):
    _, result, calls, _ = reference
    before = CALLS["n"]
    with pytest.raises(Killed):
        learn(settings(tmp_path, labeller=killing_after(kill_after)), log=None)
    assert len(labels_of(tmp_path)) == kill_after  # each label was saved as it came
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["phase"] == ("seeds" if kill_after < 3 else "label")
    resumed = learn(settings(tmp_path), log=None)
    assert CALLS["n"] - before == calls  # the killed and the resumed loop together labelled what one loop does
    assert same_configurations(list(resumed.labelled), list(result.labelled))
    assert [row["labelled"] for row in resumed.rows] == [row["labelled"] for row in result.rows]


def test_more_cycles_continue_a_finished_loop(reference, tmp_path):
    _, result, _, _ = reference
    first = learn(settings(tmp_path, max_cycles=1), log=None)
    assert first.reason == "max_cycles" and len(first.rows) == 2
    continued = learn(settings(tmp_path, max_cycles=2), log=None)
    assert same_configurations(list(continued.labelled), list(result.labelled))
    assert [row["selected"] for row in continued.rows[:2]] == [row["selected"] for row in result.rows[:2]]


def test_other_settings_in_the_same_folder_are_refused(reference):
    folder, _, _, _ = reference
    with pytest.raises(ValueError, match=r"state\.json.*gamma_select"):
        learn(settings(folder, gamma_select=3.0), log=None)


def test_gamma_break_ends_an_exploration(reference):
    _, result, _, lines = reference
    runs = [re.fullmatch(r"cycle 0: \S+ K from .*: (\d+) steps(?:, stopped \(γ = (\S+) > 10 at step (\d+)\))?", line)
            for line in lines if line.startswith("cycle 0: ") and " K from " in line]
    assert len(runs) == 6  # two temperatures × three seeds
    stopped = [run for run in runs if run[2]]
    assert stopped, "the 3-seed potential must reach γ > 10 at 1500 K"
    assert all(float(run[2]) > 10 and int(run[1]) == int(run[3]) < 20 for run in stopped)
    assert all(int(run[1]) == 20 for run in runs if not run[2])
    row = result.rows[0]
    assert row["breaks"] == len(stopped) and row["frames"] == sum(int(run[1]) for run in runs) // 2


def test_validation_errors_are_reported(tmp_path):
    test = []
    for k in range(2):
        atoms = bulk("Cu", "fcc", a=3.62, cubic=True)
        atoms.rattle(0.1, seed=10 + k)
        atoms.calc = EMT()
        atoms.get_potential_energy()  # the stored results make the seed labelled
        test.append(atoms)
    from mtpfit.active.learn import _configuration

    validation = Dataset([_configuration(a, f"test {k}", a.get_potential_energy(), a.get_forces(),
                                         a.get_stress(voigt=False)) for k, a in enumerate(test)], "test")
    before = CALLS["n"]
    labelled_seed = test[0]
    result = learn(settings(tmp_path, seeds=[labelled_seed] + seeds()[:2], validation=validation, max_cycles=0),
                   log=None)
    assert CALLS["n"] - before == 2  # the seed with stored labels is not labelled again
    assert result.rows[0]["validation_force_rmse"] > 0
    assert result.labelled[0].energy == labelled_seed.get_potential_energy()


@pytest.mark.parametrize("change, message", [
    ({"labeller": "vasp"}, "unknown labeller 'vasp'"),
    ({"labeller": 3}, "labeller must be"),
    ({"seeds": []}, "seeds must be a non-empty list"),
    ({"gamma_break": 1.5}, "gamma_break must be a number above 2"),
    ({"temperatures": [300, -1]}, "every temperature"),
    ({"steps": 0}, "steps must be an integer at least 1"),
    ({"level": 7}, "level must be one of"),
    ({"optimizer": "bfgz"}, "unknown optimizer"),
    ({"pressures": []}, "pressures must be a non-empty list"),
    ({"pressures": 5.0}, "pressures must be a non-empty list"),
    ({"pressures": [0.0, float("nan")]}, "every pressure must be a finite number"),
    ({"pressures": ["5"]}, "every pressure must be a finite number"),
    ({"barostat_time": 0.0}, "barostat_time must be a number above 0"),
    ({"mode": "atoms"}, "mode must be one of configuration, neighbourhood, got 'atoms'"),
])
def test_bad_settings_are_refused(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        LearningConfig(**settings(tmp_path, **change))


def test_npt_needs_periodic_unconstrained_seeds(tmp_path):
    from ase.build import molecule
    from ase.constraints import FixAtoms

    with pytest.raises(ValueError, match=r"seeds\[1\] \(H2O\) is not periodic in three directions"):
        LearningConfig(**settings(tmp_path, seeds=[seeds()[0], molecule("H2O")], pressures=[1.0]))
    fixed = seeds()[0]
    fixed.set_constraint(FixAtoms(indices=[0]))
    with pytest.raises(ValueError, match=r"seeds\[0\] \(Cu4\) has constraints \(FixAtoms\)"):
        LearningConfig(**settings(tmp_path, seeds=[fixed], pressures=[1.0]))
    LearningConfig(**settings(tmp_path, seeds=[molecule("H2O")]))  # NVT explores molecules
    from ase.io import write

    slab = seeds()[0]
    slab.pbc = (True, True, False)
    write(tmp_path / "slab.extxyz", slab)
    with pytest.raises(ValueError, match=r"slab\.extxyz.* is not periodic in three directions"):
        learn(settings(tmp_path / "run", seeds=[str(tmp_path / "slab.extxyz")], pressures=[1.0]), log=None)
    assert not (tmp_path / "run" / "labelled.cfg").exists()  # refused before labelling


def test_npt_dynamics_follow_the_pressure():
    """The exploration's MD on EMT Cu in a triclinic cell (primitive fcc, 2×2×1): NVT keeps the volume; NPT at 0 GPa
    stays near it (EMT's a0 ≈ 3.59 Å, the seed's 3.6 Å), and 5 GPa compresses it by about P/B (B ≈ 1.4e2 GPa for EMT
    Cu, P/B ≈ 3.6 %), so a pressure ignored, of the wrong sign or in the wrong unit (kbar, eV/Å³) fails."""
    from mtpfit.active.learn import _dynamics

    seed = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 1))
    seed.rattle(0.05, seed=1)
    config = LearningConfig(seeds=[seed], pressures=[0.0], barostat_time=500.0, timestep=5.0)
    volumes, angles = {}, {}
    for pressure in (None, 0.0, 5.0):
        atoms = seed.copy()
        atoms.calc = EMT()
        dynamics = _dynamics(config, atoms, 300.0, pressure, np.random.default_rng(0))
        volumes[pressure], angles[pressure] = [], []
        for _ in range(20):  # 200 fs: two periods of the volume's oscillation at τ_P = 500 fs
            dynamics.run(2)
            volumes[pressure].append(atoms.get_volume())
            angles[pressure].append(atoms.cell.cellpar()[3:])
    start = seed.get_volume()
    assert np.allclose(volumes[None], start, rtol=1e-12, atol=0)
    assert np.ptp(angles[5.0], axis=0).max() > 0.5  # the cell's shape is free too: its angles move, degrees
    assert abs(np.mean(volumes[0.0]) / start - 1) < 0.02
    assert 0.015 < 1 - np.mean(volumes[5.0]) / np.mean(volumes[0.0]) < 0.07


def test_npt_loop_names_pressures_and_resumes_exactly(tmp_path):
    """An NPT loop: each seed at each (temperature, pressure), the pressure in the frames' names and the log, cells
    that move, the settings recorded (a changed pressure is not resumed), and the same frames on a rerun elsewhere."""
    change = {"seeds": seeds()[:2], "temperatures": [300.0], "pressures": [0.0, 20.0], "barostat_time": 500.0,
              "steps": 10, "max_cycles": 1, "max_selected": 2}
    lines = []
    result = learn(settings(tmp_path / "a", **change), log=lines.append)
    runs = [line for line in lines if re.match(r"cycle 0: 300 K, (0|20) GPa from seed \d \(Cu4\): \d+ steps", line)]
    assert len(runs) == 4  # one temperature × two pressures × two seeds
    frames = read_cfg(tmp_path / "a" / "cycle000_frames.cfg", species=["Cu"])
    assert len(frames) == result.rows[0]["frames"]
    origins = [f.features["origin"] for f in frames]
    assert all(re.match(r"cycle 0, 300 K, (0|20) GPa from seed \d \(Cu4\), step \d+$", o) for o in origins)
    start = {f"seed {k}": s.get_volume() for k, s in enumerate(seeds()[:2])}
    moved = [abs(f.volume - start[o.split(" from ")[1][:6]]) for f, o in zip(frames, origins)]
    assert min(moved) > 1e-6
    volumes = {P: np.mean([f.volume for f, o in zip(frames, origins) if f", {P} GPa from" in o]) for P in (0, 20)}
    assert volumes[20] < volumes[0]  # even the cycle-0 potential, fitted to three labelled stresses, is compressed
    state = json.loads((tmp_path / "a" / "state.json").read_text())
    assert state["settings"]["pressures"] == [0.0, 20.0] and state["settings"]["barostat_time"] == 500.0
    with pytest.raises(ValueError, match=r"state\.json.*pressures"):
        learn(settings(tmp_path / "a", **{**change, "pressures": [0.0, 10.0]}), log=None)
    again = learn(settings(tmp_path / "b", **change), log=None)
    assert (tmp_path / "a" / "cycle000_frames.cfg").read_bytes() == (tmp_path / "b" / "cycle000_frames.cfg").read_bytes()
    assert same_configurations(list(again.labelled), list(result.labelled))


def test_nvt_settings_record_is_unchanged(tmp_path):
    """Without pressures the state.json record has no NPT entries, so loops started before they existed resume."""
    record = LearningConfig(**settings(tmp_path)).settings()
    assert "pressures" not in record and "barostat_time" not in record
    assert LearningConfig(**settings(tmp_path, pressures=[1])).settings()["pressures"] == [1.0]


def test_neighbourhood_loop_grades_atoms_and_selects(reference, tmp_path):
    """mode = "neighbourhood": the active set of atoms each cycle, a frame's γ the largest of its atoms' (written per
    atom as nbh_grades, the frame's as MV_grade), selection by atoms counting configurations; the mode is recorded,
    so a loop is not resumed in the other mode, while a configuration-mode folder (no mode in its record, as those of
    loops older than the setting) resumes."""
    from mtpfit import MTP
    from mtpfit.active import ActiveSet
    from mtpfit.active.grade import atom_grades

    folder = tmp_path / "nbh"
    result = learn(settings(folder, mode="neighbourhood", max_cycles=1), log=None)
    rows = result.rows
    assert result.reason in ("max_cycles", "converged") and 1 <= rows[0]["selected"] <= 3
    assert len(result.labelled) == 3 + rows[0]["selected"] and rows[1]["labelled"] == len(result.labelled)
    mtp = MTP.read(folder / "cycle000.mtp")
    active = ActiveSet.load(folder / "cycle000.mtp.als.npz", mtp)
    assert active.mode == "neighbourhood" and all(", atom " in source for source in active.sources)
    frames = read_cfg(folder / "cycle000_frames.cfg", species=["Cu"])
    assert len(frames) == rows[0]["frames"]
    per_atom = [f.atom_data["nbh_grades"] for f in frames]
    assert all(g.shape == (f.n_atoms,) for g, f in zip(per_atom, frames))
    assert [g.max() for g in per_atom] == [float(f.features["MV_grade"]) for f in frames]  # the same float
    # the written grades are those of the saved set of atoms for these frames
    expected = atom_grades(active, mtp, Dataset(frames, "frames"), n_threads=1)
    assert all(np.allclose(g, e, rtol=1e-9, atol=0) for g, e in zip(per_atom, expected))
    assert sum(g.max() > 2.0 for g in per_atom) == rows[0]["candidates"]
    assert max(g.max() for g in per_atom) == pytest.approx(rows[0]["max_gamma"])
    assert any(np.ptp(g) > 0.1 * g.max() for g in per_atom)  # atoms of one frame grade differently
    assert "nbh_grades" not in read_cfg(reference[0] / "cycle000_frames.cfg", species=["Cu"])[0].atom_data
    # the record and resumption
    assert json.loads((folder / "state.json").read_text())["settings"]["mode"] == "neighbourhood"
    with pytest.raises(ValueError, match=r"state\.json.*mode: 'neighbourhood' then, 'configuration' now"):
        learn(settings(folder, max_cycles=1), log=None)
    old = reference[0]
    assert "mode" not in json.loads((old / "state.json").read_text())["settings"]
    before = CALLS["n"]
    assert learn(settings(old, mode="configuration"), log=None).reason == reference[1].reason
    assert CALLS["n"] == before
    with pytest.raises(ValueError, match=r"state\.json.*mode: 'configuration' then, 'neighbourhood' now"):
        learn(settings(old, mode="neighbourhood"), log=None)


def test_labeller_names():
    assert isinstance(resolve_labeller("EMT")(), EMT)


def test_toml_settings_with_files(tmp_path):
    from ase.io import write

    structures = seeds()[:2]
    write(tmp_path / "seeds.extxyz", structures)
    (tmp_path / "loop.toml").write_text('seeds = ["seeds.extxyz"]\nlabeller = "ase.calculators.emt:EMT"\n'
                                        'level = 6\nmax_iter = 5\nmax_cycles = 0\nthreads = 1\noutput = "run"\n')
    config = LearningConfig.from_toml(tmp_path / "loop.toml")
    assert config.seeds == [str(tmp_path / "seeds.extxyz")] and config.output == str(tmp_path / "run")
    result = learn(config, log=None)
    assert result.reason == "max_cycles" and len(result.labelled) == 2
    structures[1].calc = EMT()
    # extxyz keeps 8 decimals of the positions
    assert result.labelled[1].energy == pytest.approx(structures[1].get_potential_energy(), abs=1e-6)
    (tmp_path / "npt.toml").write_text('seeds = ["seeds.extxyz"]\npressures = [0, 2.5]\nbarostat_time = 400.0\n')
    npt = LearningConfig.from_toml(tmp_path / "npt.toml")
    assert npt.pressures == [0.0, 2.5] and npt.barostat_time == 400.0
    assert npt.settings()["pressures"] == [0.0, 2.5] and npt.settings()["barostat_time"] == 400.0
    (tmp_path / "nbh.toml").write_text('seeds = ["seeds.extxyz"]\nmode = "neighbourhood"\n')
    assert LearningConfig.from_toml(tmp_path / "nbh.toml").settings()["mode"] == "neighbourhood"
    assert "mode" not in config.settings()
    (tmp_path / "npt.toml").write_text('seeds = ["seeds.extxyz"]\npressures = ["high"]\n')
    with pytest.raises(ValueError, match=r"npt\.toml: every pressure must be a finite number of GPa, got 'high'"):
        LearningConfig.from_toml(tmp_path / "npt.toml")
    (tmp_path / "bad.toml").write_text('seeds = ["seeds.extxyz"]\ngamma_selct = 3\n')
    with pytest.raises(ValueError, match=r"bad\.toml: unknown setting\(s\) gamma_selct"):
        LearningConfig.from_toml(tmp_path / "bad.toml")
    (tmp_path / "worse.toml").write_text('seeds = ["seeds.extxyz"]\nlabeller = "nowhere:vasp"\n')
    with pytest.raises(ValueError, match=r"worse\.toml: labeller 'nowhere:vasp' cannot be imported"):
        LearningConfig.from_toml(tmp_path / "worse.toml")


def test_learn_command(tmp_path, capsys):
    """`mtpfit learn CONFIG.toml` runs the loop of the file, and a rerun with more cycles continues it."""
    from ase.io import write

    from mtpfit.cli import main

    write(tmp_path / "seeds.extxyz", seeds()[:2])
    (tmp_path / "loop.toml").write_text('seeds = ["seeds.extxyz"]\nlabeller = "emt"\nlevel = 6\nmax_iter = 5\n'
                                        'max_cycles = 0\nthreads = 1\noutput = "run"\ntemperatures = [600.0]\n'
                                        'steps = 10\n')
    assert main(["learn", str(tmp_path / "loop.toml")]) == 0
    assert "max_cycles: 2 labelled configurations" in capsys.readouterr().out
    assert main(["learn", str(tmp_path / "loop.toml"), "--max-cycles", "1"]) == 0
    out = capsys.readouterr().out
    assert "labelled configurations" in out and (tmp_path / "run" / "summary.csv").exists()
