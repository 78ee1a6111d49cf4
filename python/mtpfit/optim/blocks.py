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
        For an MTP, ``radial`` is the S² species pairs' K × R radial-coefficient matrices (an ETN: :meth:`of`).

    Examples
    --------
    >>> ParameterBlocks.of(mtp)            # from an MTP (or an ETN)
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
    def of(cls, model) -> "ParameterBlocks":
        """The blocks of a potential.

        * :class:`mtpfit.MTP`: ``radial`` (S² matrices K × R), ``species``, ``moment``.
        * :class:`mtpfit.potential.etn.ETN`: ``radial`` (S²(L + 1) matrices N_c × R: W[a, b, l] of each species
          pair and angular order, channels × radial basis, as the MTP's radial block), ``species``, and
          ``core_1`` … ``core_d``. Core 1 (A, laid out (l, c, a)) is one (Σ_l n_l) × r_1 matrix and an interior
          core G_k (laid out (path, a, c, a')) one (Σ_paths r_{k−1} n_{l2}) × r_k matrix, each mapping its
          inputs to the r_k outputs of its bond; the last core B, whose per-l blocks r_{d−1} × n_l differ in
          width, is a vector.
        """
        if hasattr(model, "basis"):
            b = model.basis
            return cls(model.blocks, {"radial": (b.species_count ** 2, b.radial_funcs_count, b.radial_basis_size)})
        c, blocks = model.core, model.blocks
        S, L, d, ranks = c.species_count, c.max_l, c.copies, list(c.ranks)
        slices = {"radial": blocks["radial"], "species": blocks["species"],
                  **{f"core_{k}": blocks[f"core_{k}"] for k in range(1, d + 1)}}
        matrices = {"radial": (S * S * (L + 1), c.channels, c.radial_basis_size)}
        n = [c.channels + (l == 0) for l in range(L + 1)]
        matrices["core_1"] = (1, sum(n), ranks[0])
        for k in range(2, d):
            matrices[f"core_{k}"] = (1, sum(ranks[k - 2] * n[l2] for _, l2, _ in c.paths), ranks[k - 1])
        return cls(slices, matrices)

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
