"""One entry point that picks the reader for a file or a DeePMD-kit folder."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..data.dataset import Dataset
from .ase_formats import read_ase
from .cfg import name_species, read_cfg
from .deepmd import read_deepmd
from .errors import FormatError
from .json_formats import read_json, read_mlearn_json, read_study_json

__all__ = ["read_configurations", "read_files"]


def read_configurations(path: str | os.PathLike, format: str | None = None,
                        name: str | None = None, stress_order: str | None = None,
                        species: Sequence[str] | None = None, stress_units: str | None = None) -> Dataset:
    """Read a file (or DeePMD-kit folder) of labelled configurations into a
    :class:`~mtpfit.data.dataset.Dataset`.

    Parameters
    ----------
    path : str or os.PathLike
        The file, or a DeePMD-kit ``deepmd/npy`` folder: one system (``type.raw``,
        ``set.*/*.npy``) or a folder with systems below it (see :func:`read_deepmd`).
    format : str, optional
        ``"cfg"`` (MLIP), ``"mlearn-json"``, ``"study-json"``, ``"deepmd"`` (a folder),
        or any format name :func:`ase.io.read` knows. When ``None`` a folder is read as
        DeePMD-kit data, and a file by its name: ``.cfg`` → MLIP ``.cfg``; ``.json`` or
        ``.json.gz`` → the JSON format its first entry shows (``sim`` → study,
        ``structure`` → mlearn); anything else → ASE.
    name : str, optional
        The dataset's name; the file's (or folder's) name by default.
    stress_order : str, optional
        Voigt order of the 6 stress values of JSON files; default each format's own
        (:data:`~mtpfit.io.json_formats.STRESS_CONVENTIONS`: VASP's for mlearn/maml, MLIP's for the study's). The
        mlearn Cu, Mo and Ni files need ``"xx yy zz xy xz yz"`` (see :func:`read_mlearn_json`).
    species : sequence of str, optional
        Element symbol of each type 0 … S−1 (``--species``). Integer types (``.cfg``, study JSON) are read as
        ``species[type]``; element symbols of other formats are only checked to be among ``species``
        (:func:`~mtpfit.io.cfg.name_species`).
    stress_units : {"kBar", "eV"}, optional
        Units of the stress values of JSON files; default each format's own (kBar for mlearn/maml, eV — the
        PlusStress — for the study's; its MoNbTaW ``seed_validation.json`` needs ``"kBar"`` and VASP order).

    Returns
    -------
    Dataset
        Positions in Å, energies in eV, forces in eV/Å, PlusStress in eV.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a folder and ``format`` names a file format.
    ModuleNotFoundError
        If ``path`` is DeePMD-kit data and dpdata is not installed.
    FormatError
        If the file is empty or malformed, naming the file (and line or configuration),
        or a folder holds no DeePMD-kit system or a malformed one, naming the folder; with
        ``species``, a type ≥ ``len(species)``.
    ValueError
        With ``species``, for elements of the data not in it, naming them and the configuration.
    """
    path = Path(path)
    deepmd = format == "deepmd" or (format is None and path.is_dir())
    if not deepmd:
        if path.is_dir():
            raise IsADirectoryError(f"{path}: a folder; only DeePMD-kit data (format 'deepmd') is read from one")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise FormatError(path, "empty file")
    lower = path.name.lower()
    if deepmd:
        configurations = read_deepmd(path)
    elif format is not None:
        if format == "mlearn-json":
            configurations = read_mlearn_json(path, stress_order=stress_order, stress_units=stress_units)
        elif format == "cfg":
            configurations = read_cfg(path, species)
        elif format == "study-json":
            configurations = read_study_json(path, stress_order=stress_order, stress_units=stress_units)
        else:
            configurations = read_ase(path, format=format)
    elif lower.endswith(".cfg"):
        configurations = read_cfg(path, species)
    elif lower.endswith((".json", ".json.gz")):
        configurations = read_json(path, stress_order=stress_order, stress_units=stress_units)
    else:
        configurations = read_ase(path)
    if species is not None:
        configurations = name_species(configurations, species, path)
    return Dataset(configurations, name or path.absolute().name)  # "." names its folder


def read_files(paths: Sequence, format: str | None = None, stress_order: str | None = None,
               species: Sequence | None = None, stress_units: str | None = None) -> Dataset:
    """The configurations of several files (or DeePMD folders), in order, as one dataset (named ``a+b+…``).

    Parameters and errors as :func:`read_configurations`, applied to each path; ``paths`` must not be empty.
    """
    if not paths:
        raise ValueError("no files to read")
    sets = [read_configurations(p, format=format, stress_order=stress_order, species=species,
                                stress_units=stress_units) for p in paths]
    total = sets[0]
    for other in sets[1:]:
        total = total + other
    return total
