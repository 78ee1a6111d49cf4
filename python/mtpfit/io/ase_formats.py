"""Anything ASE reads (extended XYZ, VASP outputs, ...), through :func:`ase.io.read`."""
from __future__ import annotations

import os

import numpy as np

from ..data.configuration import Configuration
from .errors import FormatError

__all__ = ["read_ase"]

# Atoms.info keys that name the configuration's group, in order of precedence.
_GROUP_KEYS = ("config_type", "group")
_FORCE_ARRAYS = ("forces", "force")


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
        If ASE cannot parse the file, it holds no configuration, or a frame is
        inconsistent (e.g. a stress without a cell volume), naming the file and frame.
    """
    # imported here: ase.io pulls in every format module, which the other readers never need
    from ase.io import read
    from ase.io.formats import UnknownFileTypeError

    try:
        frames = read(path, index=index, format=format)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    # ASE's parsers report bad input through many exception types (extxyz: an OSError).
    except (OSError, ValueError, KeyError, IndexError, TypeError, StopIteration,
            AssertionError, UnknownFileTypeError) as exc:
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
    info = {k: _scalar(v) for k, v in atoms.info.items()}
    group = next((str(info[k]) for k in _GROUP_KEYS if info.get(k) is not None), None)
    features = {k: v for k, v in info.items()
                if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    return Configuration(
        positions=atoms.positions, species=np.array(atoms.get_chemical_symbols()),
        cell=cell if has_cell else None, pbc=pbc if has_cell else None,
        energy=_result(atoms, "energy"), forces=forces,
        plus_stress=plus_stress, group=group, source=source, features=features)
