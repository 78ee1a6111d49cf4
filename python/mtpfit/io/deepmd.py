"""DeePMD-kit ``deepmd/npy`` data folders, through dpdata."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.configuration import Configuration
from .errors import FormatError

__all__ = ["read_deepmd", "find_deepmd_systems"]

#: The file that makes a folder a DeePMD system (dpdata and DeePMD-kit look for the same).
SYSTEM_MARKER = "type.raw"
_INSTALL_HINT = 'reading DeePMD-kit data needs dpdata: pip install "mtpfit[deepmd]"'


def find_deepmd_systems(path: str | os.PathLike) -> list[Path]:
    """The DeePMD system folders at or below ``path``.

    A system folder is one holding ``type.raw``; the search does not descend into a
    system folder, and visits sub-folders in name order, so the result is the same on
    every machine. Symbolic links to folders are not followed.

    Parameters
    ----------
    path : str or os.PathLike
        A system folder, or a folder with system folders at any depth below it.

    Returns
    -------
    list of Path
        ``[path]`` when ``path`` itself holds ``type.raw``; otherwise every system folder
        below it, depth first in name order; empty when there is none.
    """
    path = Path(path)
    if (path / SYSTEM_MARKER).is_file():
        return [path]
    systems = []
    for root, dirs, files in os.walk(path):
        if SYSTEM_MARKER in files:
            systems.append(Path(root))
            dirs.clear()
        else:
            dirs.sort()
    return systems


def read_deepmd(path: str | os.PathLike) -> list[Configuration]:
    """Read a DeePMD-kit ``deepmd/npy`` system folder, or every one below a folder.

    A system folder holds ``type.raw`` (the 0-based type of each atom), optionally
    ``type_map.raw`` (the name of each type), optionally an empty ``nopbc`` file (a
    molecule), and ``set.*`` folders with ``coord.npy`` (F, 3N), Å; ``box.npy`` (F, 9),
    Å, the lattice vectors as rows; ``energy.npy`` (F,), eV; and optionally
    ``force.npy`` (F, 3N), eV/Å, and ``virial.npy`` (F, 9), eV. It is read with
    ``dpdata.LabeledSystem(folder, fmt="deepmd/npy")``.

    Parameters
    ----------
    path : str or os.PathLike
        A system folder, or a folder with system folders below it (see
        :func:`find_deepmd_systems`); they are read in that order.

    Returns
    -------
    list of Configuration
        One per frame, the frames of a system in the order of its ``set.*`` folders.
        ``species`` the names in ``type_map.raw`` (element symbols), or the integer types
        without it; ``cell`` the box and ``pbc`` all ``True``, or ``cell=None`` with a
        ``nopbc`` file; ``energy``, ``forces`` (``None`` without ``force.npy``);
        ``plus_stress`` (3, 3), eV, the virial as stored (``None`` without
        ``virial.npy``); ``group`` the system folder's path relative to ``path`` (its
        name when ``path`` is the system); ``source`` ``"<system folder>, frame K"`` with
        K counted from 0 over the system's sets.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModuleNotFoundError
        If dpdata is not installed (it comes with ``pip install "mtpfit[deepmd]"``).
    FormatError
        Naming the folder: if ``path`` is not a folder or holds no ``type.raw`` at any
        depth, a system has no ``set.*`` folder or a set lacks ``coord.npy``,
        ``energy.npy`` or (periodic systems) ``box.npy``, dpdata cannot read the system
        (an unreadable array, a type without a name in ``type_map.raw``, arrays whose
        frame or atom counts disagree), or a frame holds NaN or infinity or a zero box
        vector (then naming the frame as ``configuration K``).

    Notes
    -----
    The virial DeePMD-kit stores is the MLIP PlusStress (MTP_SPEC §5): dpdata exports it
    to ASE as the stress ``-virial / V`` (``dpdata/plugins/ase.py``), and
    :func:`~mtpfit.io.read_ase` takes PlusStress ``= -stress · V`` from ASE, so both
    readers give the same PlusStress for the same structure.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder")
    if not path.is_dir():
        raise FormatError(path, "not a folder; DeePMD data is a folder with type.raw and set.* folders")
    systems = find_deepmd_systems(path)
    if not systems:
        raise FormatError(path, f"no DeePMD system: no {SYSTEM_MARKER} in this folder or its sub-folders")
    dpdata = _import_dpdata()
    configurations = []
    for folder in systems:
        group = path.resolve().name if folder == path else folder.relative_to(path).as_posix()
        configurations.extend(_read_system(dpdata, folder, group))
    return configurations


def _import_dpdata():
    # imported here: dpdata is an optional dependency, and importing it loads every format plugin
    try:
        import dpdata
    except ImportError as exc:
        raise ModuleNotFoundError(_INSTALL_HINT, name="dpdata") from exc
    return dpdata


def _check_layout(folder: Path) -> None:
    """Report the missing files dpdata would otherwise name only by a bare file error."""
    sets = sorted(p for p in folder.glob("set.*") if p.is_dir())
    if not sets:
        raise FormatError(folder, "no set.* folder")
    required = ["coord.npy", "energy.npy"]
    if not (folder / "nopbc").is_file():
        required.append("box.npy")
    for s in sets:
        missing = [name for name in required if not (s / name).is_file()]
        if missing:
            raise FormatError(folder, f"{s.name} has no {', '.join(missing)}")


def _read_system(dpdata, folder: Path, group: str) -> list[Configuration]:
    _check_layout(folder)
    try:
        system = dpdata.LabeledSystem(os.fspath(folder), fmt="deepmd/npy")
    except PermissionError:
        raise
    # dpdata reports bad arrays through numpy's exceptions (ValueError for a reshape or a
    # pickled file, EOFError for an empty one) and disagreeing shapes through its DataError.
    except (OSError, ValueError, EOFError, IndexError, KeyError, TypeError,
            dpdata.data_type.DataError) as exc:
        raise FormatError(folder, f"dpdata cannot read it: {type(exc).__name__}: {exc}") from None
    data = system.data
    types = np.asarray(data["atom_types"], dtype=int)
    # without type_map.raw dpdata invents the names "Type_0", ...; the integer types say the same
    species = (np.array(data["atom_names"])[types] if (folder / "type_map.raw").is_file() else types)
    molecule = bool(data.get("nopbc", False))
    forces = data.get("forces")
    virials = data.get("virials")
    configurations = []
    for k in range(system.get_nframes()):
        source = f"{os.fspath(folder)}, frame {k}"
        try:
            configurations.append(Configuration(
                positions=data["coords"][k], species=species,
                cell=None if molecule else data["cells"][k],
                pbc=None if molecule else np.ones(3, bool),
                energy=data["energies"][k],
                forces=None if forces is None else forces[k],
                plus_stress=None if virials is None else virials[k],
                group=group, source=source))
        except ValueError as exc:
            raise FormatError(folder, str(exc).removeprefix(f"{source}: "), index=k) from None
    return configurations
