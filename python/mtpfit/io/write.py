"""Predictions of a potential written next to the DFT labels: extended XYZ (any viewer, ASE) or MLIP ``.cfg``."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.configuration import Configuration
from ..data.dataset import Dataset
from .cfg import write_cfg

if TYPE_CHECKING:  # the objective imports the readers: a type only, no import cycle
    from ..objective.objective import Predictions

__all__ = ["write_predictions", "prediction_frames", "PREDICTION_FORMATS"]

#: Formats :func:`write_predictions` writes, and the file endings that choose them.
PREDICTION_FORMATS = {"extxyz": (".xyz", ".extxyz"), "cfg": (".cfg",)}

# Voigt order of ASE's stress: xx yy zz yz xz xy
_VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])


def write_predictions(path: str | os.PathLike, dataset: Dataset, predictions: Predictions,
                      format: str | None = None, species: Sequence[str] | None = None) -> Path:
    """Write a potential's predictions for every configuration of ``dataset``, with its DFT labels where the
    format holds them.

    ``"extxyz"``: one frame per configuration whose energy, forces and stress are the *predicted* ones (what
    :func:`mtpfit.io.read_configurations` and :func:`ase.io.read` read back as the labels), the stress in ASE's
    convention σ = −S/V (eV/Å³, Voigt xx yy zz yz xz xy) and only for 3D-periodic cells. The DFT labels, when
    the configuration has them, are kept as ``dft_energy`` (info, eV), ``dft_forces`` (per-atom array, eV/Å),
    ``dft_stress`` (info, σ = −S/V in eV/Å³, Voigt, 3D-periodic cells only) and ``dft_force_mask`` (per-atom,
    only when some forces are unlabelled); the group as ``config_type`` and where the configuration came from
    as ``source``. Every real number is written as its shortest round-trip text (``repr``), so it reads back
    bit for bit (ASE's own writer prints per-atom columns with 8 decimals); the comment line is ASE's
    :func:`ase.io.extxyz.key_val_dict_to_str`.

    ``"cfg"``: what MLIP's ``mlp calc-efs`` writes: each configuration with the predicted energy, forces and
    PlusStress (eV, for every configuration) in place of its labels, its features kept and ``EFS_by`` set to
    ``mtpfit``; the DFT labels are not kept (the format has no place for them).

    Parameters
    ----------
    path : str or os.PathLike
        Output file, replaced atomically (written as ``<name>.tmp`` first).
    dataset : Dataset
        The K configurations, positions in Å.
    predictions : Predictions
        From :meth:`mtpfit.Objective.predict` on ``dataset``: energies (K,) eV, forces (n_atoms, 3) eV/Å,
        PlusStress (K, 3, 3) eV.
    format : {"extxyz", "cfg"}, optional
        Chosen by the file ending when ``None`` (see :data:`PREDICTION_FORMATS`).
    species : sequence of str, optional
        Species labels in type order (``species[t]`` is type t), e.g. the potential's ``mtp.species``. extxyz:
        the element symbols of integer types (configurations read from ``.cfg``); configurations with symbols
        keep them. cfg: the type of each symbol; default the dataset's sorted symbols, which match the
        potential's types only when it was built with them sorted.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        For an unknown format or file ending; predictions of another number of configurations or atoms than
        ``dataset``; for extxyz, integer types without ``species`` (or outside it) or species that are no element
        symbols, naming the configuration; for cfg, what :func:`~mtpfit.io.write_cfg` refuses.
    """
    path = Path(path)
    format = format or next((name for name, endings in PREDICTION_FORMATS.items()
                             if path.name.lower().endswith(endings)), None)
    if format not in PREDICTION_FORMATS:
        known = ", ".join(f"{name} ({' '.join(endings)})" for name, endings in PREDICTION_FORMATS.items())
        what = f"format {format!r}" if format else f"the file ending of {path.name!r}"
        raise ValueError(f"{path}: cannot write predictions in {what}; known formats: {known}")
    _check_predictions(dataset, predictions)
    # through a temporary file, as every file of a run: a kill leaves the previous file or the new one
    tmp = path.with_name(path.name + ".tmp")
    try:
        if format == "cfg":
            _write_cfg(tmp, dataset, predictions, species)
        else:
            frames = prediction_frames(dataset, predictions, species)
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.writelines(_extxyz_frame(atoms) for atoms in frames)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def prediction_frames(dataset: Dataset, predictions: Predictions, species: Sequence[str] | None = None) -> list:
    """The configurations of ``dataset`` as :class:`ase.Atoms` with the predictions attached by a
    :class:`~ase.calculators.singlepoint.SinglePointCalculator` and the DFT labels in ``info``/``arrays``, as
    :func:`write_predictions` writes them to extxyz (see there for the keys, units and ``species``).

    Returns
    -------
    list of ase.Atoms

    Raises
    ------
    ValueError
        As :func:`write_predictions` for extxyz.
    """
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    _check_predictions(dataset, predictions)
    frames = []
    for k, c in enumerate(dataset):
        atoms = Atoms(symbols=_symbols(c, species), positions=c.positions,
                      cell=c.cell if c.cell is not None else np.zeros((3, 3)), pbc=c.pbc)
        results = {"energy": float(predictions.energies[k]), "forces": predictions.forces_of(k).copy()}
        if c.volume:
            results["stress"] = _ase_stress(predictions.stresses[k], c.volume)
        atoms.calc = SinglePointCalculator(atoms, **results)
        if c.energy is not None:
            atoms.info["dft_energy"] = c.energy
        if c.plus_stress is not None and c.volume:
            atoms.info["dft_stress"] = _ase_stress(c.plus_stress, c.volume)
        if c.group is not None:
            atoms.info["config_type"] = str(c.group)
        atoms.info["source"] = c.source
        if c.forces is not None:
            atoms.arrays["dft_forces"] = c.forces.copy()
            if not c.labelled_forces.all():
                atoms.arrays["dft_force_mask"] = c.labelled_forces.copy()
        frames.append(atoms)
    return frames


def _check_predictions(dataset: Dataset, predictions: Predictions) -> None:
    atoms = [c.n_atoms for c in dataset]
    if (len(predictions.energies) != len(dataset) or len(predictions.stresses) != len(dataset)
            or not np.array_equal(np.diff(predictions.offsets), atoms)):
        raise ValueError(f"{dataset.name}: the predictions are of {len(predictions.energies)} configurations and "
                         f"{len(predictions.forces)} atoms, the dataset has {len(dataset)} and {sum(atoms)}: "
                         "predict on the same dataset")


def _ase_stress(plus_stress: np.ndarray, volume: float) -> np.ndarray:
    """ASE's stress σ = −S/V (eV/Å³, Voigt) of a PlusStress S (eV), as :meth:`Configuration.to_ase`."""
    return (-plus_stress / volume)[_VOIGT]


def _symbols(c: Configuration, species: Sequence[str] | None) -> list[str]:
    from ase.data import atomic_numbers

    if c.species.dtype.kind in "iu":
        if species is None:
            raise ValueError(f"{c.source}: species are integer types; extxyz needs element symbols: pass "
                             "species=[symbol of type 0, type 1, …] (e.g. the potential's species), or write .cfg")
        outside = sorted({int(t) for t in c.species if not 0 <= t < len(species)})
        if outside:
            raise ValueError(f"{c.source}: type {outside[0]} has no symbol in species={list(species)}")
        symbols = [str(species[t]) for t in c.species]
    else:
        symbols = [str(s) for s in c.species]
    unknown = sorted({s for s in symbols if s not in atomic_numbers})
    if unknown:
        raise ValueError(f"{c.source}: species {', '.join(unknown)} are not element symbols, which extxyz needs; "
                         "write .cfg instead")
    return symbols


def _extxyz_frame(atoms) -> str:
    """One extended XYZ frame of ``atoms``, every real as its shortest round-trip text."""
    from ase.io.extxyz import key_val_dict_to_str
    from ase.stress import voigt_6_to_full_3x3_stress

    n = len(atoms)
    columns = [("species", "S", np.array(atoms.get_chemical_symbols(), dtype=object).reshape(n, 1)),
               ("pos", "R", atoms.positions)]
    columns += [(name, "R" if value.dtype.kind == "f" else "L", value.reshape(n, -1))
                for name, value in atoms.arrays.items() if name not in ("numbers", "positions")]
    results = atoms.calc.results if atoms.calc is not None else {}
    if "forces" in results:
        columns.append(("forces", "R", results["forces"]))
    properties = ":".join(f"{name}:{kind}:{value.shape[1]}" for name, kind, value in columns)
    info = dict(atoms.info)
    if "energy" in results:
        info["energy"] = results["energy"]
    if "stress" in results:     # ASE's reader takes the stress of the comment line only as 9 values
        info["stress"] = voigt_6_to_full_3x3_stress(results["stress"])
    info["pbc"] = np.array(atoms.pbc)
    header = (f'Lattice="{" ".join(repr(float(x)) for x in atoms.cell.array.ravel())}" '
              if atoms.cell.array.any() else "")
    header += f"Properties={properties} {key_val_dict_to_str(info)}"
    # one %-format per atom line: "%r" of a Python float is its shortest round-trip text
    line = " ".join({"S": "%s", "R": "%r", "L": "%s"}[kind] for _, kind, value in columns
                    for _ in range(value.shape[1])) + "\n"
    table = np.hstack([np.where(value, "T", "F").astype(object) if kind == "L" else value.astype(object)
                       for _, kind, value in columns])
    return f"{n}\n{header}\n" + "".join(line % tuple(row) for row in table.tolist())


def _write_cfg(path: Path, dataset: Dataset, predictions: Predictions, species) -> None:
    integer = all(c.species.dtype.kind in "iu" for c in dataset)
    order = None if integer else (list(species) if species is not None
                                  else [s for s in dataset.species() if isinstance(s, str)])
    predicted = [dataclasses.replace(c, energy=float(predictions.energies[k]), forces=predictions.forces_of(k),
                                     plus_stress=predictions.stresses[k], force_mask=None, weights=None,
                                     features={**c.features, "EFS_by": "mtpfit"})
                 for k, c in enumerate(dataset)]
    write_cfg(path, predicted, species_order=order)
