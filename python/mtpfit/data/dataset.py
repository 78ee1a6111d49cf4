"""A list of configurations with the operations training needs: species, groups, splits."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from .configuration import Configuration

__all__ = ["Dataset"]


class Dataset(Sequence):
    """An ordered collection of :class:`Configuration` objects.

    Parameters
    ----------
    configurations : iterable of Configuration
    name : str
        Label used in reports and error messages (usually the file name).

    Raises
    ------
    ValueError
        If ``configurations`` is empty.
    """

    def __init__(self, configurations: Iterable[Configuration], name: str = "dataset"):
        self.configurations = list(configurations)
        self.name = name
        if not self.configurations:
            raise ValueError(f"{name}: the dataset is empty")

    def __len__(self) -> int:
        return len(self.configurations)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Dataset(self.configurations[index], self.name)
        return self.configurations[index]

    def __add__(self, other: "Dataset") -> "Dataset":
        return Dataset(self.configurations + list(other), f"{self.name}+{other.name}")

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self)} configurations, {self.n_atoms} atoms)"

    @property
    def n_atoms(self) -> int:
        """Total number of atoms."""
        return sum(c.n_atoms for c in self.configurations)

    def fingerprint(self) -> str:
        """SHA-256 (hex) of every configuration's positions, species, cell and labels: equal for equal data, so
        cached results are never reused for other data."""
        digest = hashlib.sha256()
        for c in self.configurations:
            for array in (c.positions, c.cell, c.energy, c.forces, c.plus_stress):
                if array is not None:
                    digest.update(np.ascontiguousarray(array, dtype=float).tobytes())
            digest.update(str(c.species.tolist()).encode())
        return digest.hexdigest()

    def species(self) -> list:
        """Sorted distinct species labels found in the dataset."""
        found = set()
        for c in self.configurations:
            found.update(c.species.tolist())
        return sorted(found, key=lambda s: (isinstance(s, str), s))

    def groups(self) -> list[str]:
        """Distinct group labels in order of first appearance (``None`` excluded)."""
        seen: dict[str, None] = {}
        for c in self.configurations:
            if c.group is not None:
                seen.setdefault(c.group)
        return list(seen)

    def subset(self, indices: Sequence[int], name: str | None = None) -> "Dataset":
        """The configurations at ``indices``, in that order."""
        return Dataset([self.configurations[i] for i in indices], name or self.name)

    def split_indices(self, validation_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The configuration indices of :meth:`split`: ``(train, validation)``, each sorted.

        Raises
        ------
        ValueError
            If ``validation_fraction`` is not in (0, 1) or there are fewer than two configurations.
        """
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
        if len(self) < 2:
            raise ValueError(f"{self.name}: cannot split a dataset of {len(self)} configuration")
        order = np.random.default_rng(seed).permutation(len(self))
        n_val = min(len(self) - 1, max(1, int(round(validation_fraction * len(self)))))
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def split(self, validation_fraction: float, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """Seeded random split into training and validation sets.

        Parameters
        ----------
        validation_fraction : float
            Fraction in (0, 1) of configurations put into the validation set (at least one).
        seed : int
            Seed of :func:`numpy.random.default_rng`; the same seed gives the same split.

        Returns
        -------
        train, validation : Dataset
            Their indices are :meth:`split_indices`.
        """
        train, validation = self.split_indices(validation_fraction, seed)
        return self.subset(train, f"{self.name}[train]"), self.subset(validation, f"{self.name}[validation]")
