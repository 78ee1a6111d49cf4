"""One entry point that picks the reader for a file."""
from __future__ import annotations

import os
from pathlib import Path

from ..data.dataset import Dataset
from .ase_formats import read_ase
from .cfg import read_cfg
from .errors import FormatError
from .json_formats import VASP_STRESS_ORDER, read_json, read_mlearn_json, read_study_json

__all__ = ["read_configurations"]

_READERS = {"cfg": read_cfg, "mlearn-json": read_mlearn_json, "study-json": read_study_json}


def read_configurations(path: str | os.PathLike, format: str | None = None,
                        name: str | None = None, stress_order: str = VASP_STRESS_ORDER) -> Dataset:
    """Read a file of labelled configurations into a :class:`~mtpfit.data.dataset.Dataset`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    format : str, optional
        ``"cfg"`` (MLIP), ``"mlearn-json"``, ``"study-json"``, or any format name
        :func:`ase.io.read` knows. When ``None`` it follows the file name: ``.cfg`` →
        MLIP ``.cfg``; ``.json`` or ``.json.gz`` → the JSON format its first entry
        shows (``sim`` → study, ``structure`` → mlearn); anything else → ASE.
    name : str, optional
        The dataset's name; the file name by default.
    stress_order : str
        Voigt order of the 6 stress values in mlearn/maml JSON (see :func:`read_mlearn_json`;
        the mlearn Cu, Mo and Ni files need ``"xx yy zz xy xz yz"``).

    Returns
    -------
    Dataset
        Positions in Å, energies in eV, forces in eV/Å, PlusStress in eV.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If the file is empty or malformed, naming the file (and line or configuration).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise FormatError(path, "empty file")
    lower = path.name.lower()
    if format is not None:
        if format == "mlearn-json":
            configurations = read_mlearn_json(path, stress_order=stress_order)
        elif format in _READERS:
            configurations = _READERS[format](path)
        else:
            configurations = read_ase(path, format=format)
    elif lower.endswith(".cfg"):
        configurations = read_cfg(path)
    elif lower.endswith((".json", ".json.gz")):
        configurations = read_json(path, stress_order=stress_order)
    else:
        configurations = read_ase(path)
    return Dataset(configurations, name or path.name)
