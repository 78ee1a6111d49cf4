"""Named blocks of the flat parameter vector θ, so block-aware optimizers know its structure."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ParameterBlocks"]


@dataclass(frozen=True)
class ParameterBlocks:
    """θ as named slices, some of which are stacks of matrices.

    Parameters
    ----------
    slices : dict of str to slice
        Consecutive, non-overlapping slices covering θ (e.g. ``radial``, ``species``, ``moment``).
    matrices : dict of str to tuple of int
        For blocks that are matrices: the shape ``(count, rows, cols)`` the block's values reshape to, row-major.
        For an MTP, ``radial`` is the S² species pairs' K × R radial-coefficient matrices.

    Examples
    --------
    >>> ParameterBlocks.of(mtp)            # from an MTP
    >>> ParameterBlocks({"all": slice(0, n)})
    """

    slices: dict
    matrices: dict

    def __init__(self, slices: dict, matrices: dict | None = None):
        object.__setattr__(self, "slices", dict(slices))
        object.__setattr__(self, "matrices", dict(matrices or {}))
        stop = 0
        for name, s in self.slices.items():
            if s.start != stop:
                raise ValueError(f"block {name!r} starts at {s.start}, expected {stop}")
            stop = s.stop
        for name, (count, rows, cols) in self.matrices.items():
            s = self.slices[name]
            if count * rows * cols != s.stop - s.start:
                raise ValueError(f"block {name!r} has {s.stop - s.start} values, not {count}×{rows}×{cols}")

    @classmethod
    def of(cls, mtp) -> "ParameterBlocks":
        """The blocks of an :class:`mtpfit.MTP`: radial (S² matrices K × R), species, moment."""
        b = mtp.basis
        return cls(mtp.blocks, {"radial": (b.species_count ** 2, b.radial_funcs_count, b.radial_basis_size)})

    @property
    def size(self) -> int:
        """Length of θ."""
        return max(s.stop for s in self.slices.values())

    def split(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Views of ``x`` per block (matrix blocks reshaped to (count, rows, cols))."""
        out = {}
        for name, s in self.slices.items():
            out[name] = x[s].reshape(self.matrices[name]) if name in self.matrices else x[s]
        return out
