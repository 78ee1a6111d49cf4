"""Anything ASE reads (extended XYZ, VASP outputs, ...), through :func:`ase.io.read`."""
from __future__ import annotations

import numbers
import os
import re
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from ..data.configuration import Configuration
from .errors import FormatError

__all__ = ["read_ase"]

# Atoms.info keys that name the configuration's group, in order of precedence.
_GROUP_KEYS = ("config_type", "group")
_FORCE_ARRAYS = ("forces", "force")
_XYZ_SUFFIXES = (".xyz", ".extxyz")


def read_ase(path: str | os.PathLike, index: str | int | slice = ":",
             format: str | None = None) -> list[Configuration]:
    """Read configurations with :func:`ase.io.read`.

    Parameters
    ----------
    path : str or os.PathLike
        Any file ASE reads, e.g. extended XYZ.
    index : str, int or slice
        Which frames, as :func:`ase.io.read` takes it (``":"`` for all).
    format : str, optional
        ASE format name; guessed by ASE when ``None``.

    Returns
    -------
    list of Configuration
        ``species`` the chemical symbols; ``positions`` (N, 3), Å; ``cell`` (3, 3), Å,
        and ``pbc`` as the Atoms has them (``cell=None`` when it has neither a cell nor
        periodicity); ``energy`` (eV), ``forces`` (N, 3, eV/Å) from the attached
        calculator's stored results (forces also from a per-atom ``forces`` or ``force``
        array), ``None`` when absent; ``plus_stress`` = −σ·V (3, 3),
        eV, from ASE's stress σ (eV/Å³); ``group`` from ``info["config_type"]`` (else
        ``info["group"]``); ``features`` the scalar ``info`` entries.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If ASE cannot parse the file, it holds no configuration, an (extended) XYZ frame
        header counts more atoms than lines follow (naming the line), or a frame is
        inconsistent (e.g. a stress without a cell volume, an energy that is not a
        number, an atomic number that is no element), naming the file and frame.
    """
    # imported here: ase.io pulls in every format module, which the other readers never need
    from ase.io import read
    from ase.io.formats import UnknownFileTypeError

    if format in ("extxyz", "xyz") or (format is None and Path(path).suffix.lower() in _XYZ_SUFFIXES):
        _check_xyz_counts(path)
    try:
        frames = read(path, index=index, format=format)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    # ASE's parsers report bad input through many exception types (extxyz: an OSError; an
    # integer column beyond int64: an OverflowError).
    except (OSError, ValueError, KeyError, IndexError, TypeError, StopIteration,
            AssertionError, OverflowError, UnknownFileTypeError) as exc:
        raise FormatError(path, f"ASE cannot read it: {type(exc).__name__}: {exc}") from None
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise FormatError(path, "no configuration")
    configurations = []
    for k, atoms in enumerate(frames):
        source = f"{os.fspath(path)}, configuration {k}"
        try:
            configurations.append(_configuration(atoms, source))
        except ValueError as exc:
            raise FormatError(path, str(exc).removeprefix(f"{source}: "), index=k) from None
    return configurations


def _check_xyz_counts(path: str | os.PathLike) -> None:
    """Refuse the (extended) XYZ counts that ASE would spend unbounded time or memory on.

    ASE's extxyz reader indexes the frames first, calling ``readline`` once per counted
    atom, also past the end of the file (a count of 1e20 never returns), and builds its
    column list from the ``Properties`` widths before it reads a value (a width of 2**31
    exhausts the memory). This walks the frames the same way (universal newlines, a blank
    line ends the file, ``VEC`` lines after a frame) but jumps instead of reading, and
    refuses a count larger than the lines that follow or ``Properties`` wider than the
    frame's first atom line; anything else that is wrong is left to ASE to report.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    if lines[-1] == "":  # the final newline does not open another line
        lines.pop()
    pos = 0
    while pos < len(lines) and lines[pos].strip():
        try:
            count = int(lines[pos])
        except ValueError:
            return
        following = max(len(lines) - pos - 2, 0)
        if not 0 <= count <= following:
            raise FormatError(path, f"the frame header counts {count} atoms but {following} lines follow",
                              line=pos + 1)
        properties = re.search(r"Properties=[\"']?([^\s\"']+)", lines[pos + 1])
        widths = properties[1].split(":")[2::3] if properties else []
        if count and all(w.isdigit() for w in widths):
            values = len(lines[pos + 2].split())
            if sum(int(w) for w in widths) > values:
                raise FormatError(path, f"Properties declares {sum(int(w) for w in widths)} values per atom, "
                                        f"the atom line has {values}", line=pos + 2)
        pos += count + 2
        while pos < len(lines) and lines[pos].lstrip().startswith("VEC"):
            pos += 1


def _result(atoms, name: str):
    """A stored result of the attached calculator, or ``None``; never runs a calculation."""
    from ase.calculators.calculator import PropertyNotImplementedError

    if atoms.calc is None:
        return None
    try:
        return atoms.calc.get_property(name, atoms, allow_calculation=False)
    except PropertyNotImplementedError:
        return None


def _scalar(value):
    return value.item() if isinstance(value, np.generic) else value


def _configuration(atoms, source: str) -> Configuration:
    # ASE takes a Z column over the species one and indexes its symbol list with it: Z = -1 became "Og"
    outside = [int(z) for z in atoms.numbers if not 1 <= z < len(chemical_symbols)]
    if outside:
        raise ValueError(f"atomic number {outside[0]} is not an element")
    cell = np.array(atoms.cell.array, dtype=float)
    pbc = np.array(atoms.pbc, dtype=bool)
    has_cell = bool(np.any(cell != 0.0) or pbc.any())
    stress = _result(atoms, "stress")
    plus_stress = None
    if stress is not None:
        volume = abs(np.linalg.det(cell))
        if not volume > 0.0:
            raise ValueError("a stress is given but the cell has no volume")
        sigma = np.asarray(stress, dtype=float)
        if sigma.shape == (6,):  # Voigt xx yy zz yz xz xy
            sigma = sigma[[[0, 5, 4], [5, 1, 3], [4, 3, 2]]]
        plus_stress = -sigma * volume
    forces = _result(atoms, "forces")
    if forces is None:
        # Columns not named exactly "forces" (mlearn's extxyz has "force") stay plain arrays.
        forces = next((atoms.arrays[k] for k in _FORCE_ARRAYS if k in atoms.arrays), None)
    energy = _result(atoms, "energy")
    if energy is not None and (isinstance(energy, (bool, np.bool_)) or not isinstance(energy, numbers.Real)):
        raise ValueError(f"the energy is {energy!r}, not a number")
    info = {k: _scalar(v) for k, v in atoms.info.items()}
    group = next((str(info[k]) for k in _GROUP_KEYS if info.get(k) is not None), None)
    features = {k: v for k, v in info.items()
                if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    return Configuration(
        positions=atoms.positions, species=np.array(atoms.get_chemical_symbols()),
        cell=cell if has_cell else None, pbc=pbc if has_cell else None,
        energy=energy, forces=forces,
        plus_stress=plus_stress, group=group, source=source, features=features)
