"""Reading a potential file of either model: an ``.mtp`` file (MTP) or an ETN JSON file."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .etn import ETN
from .mtp import MTP

__all__ = ["read_potential"]


def read_potential(path, species: Sequence | None = None):
    """The potential in ``path``: an :class:`~mtpfit.potential.etn.ETN` for a JSON file (its first non-blank
    character ``{``, as :meth:`ETN.write` writes it, e.g. ``trained.etn.json``), else an :class:`MTP` from an
    ``.mtp`` file.

    Parameters
    ----------
    path : str or Path
    species : sequence, optional
        Labels of the types 0 … S−1 (:meth:`MTP.with_species`; they must agree with the names a file gives).

    Returns
    -------
    MTP or ETN

    Raises
    ------
    mtpfit.io.FormatError
        On a malformed file, naming it.
    ValueError
        If ``species`` contradicts the species the file names or has the wrong length.
    OSError
        If the file cannot be read.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith(b"{"):
        etn = ETN.read(path)
        return etn if species is None else etn.with_species(species)
    return MTP.read(path, species)
