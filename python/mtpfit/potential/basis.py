"""The MTP basis: radial basis settings and the moment contraction graph an ``.mtp`` file defines."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["MTPBasis"]


@dataclass(frozen=True)
class MTPBasis:
    """Everything in an ``.mtp`` file except the trainable coefficients (MTP_SPEC §2–4, §9).

    Parameters
    ----------
    species_count : int
        Number of species S.
    min_dist, max_dist : float
        R_min and the cutoff R_cut of the Chebyshev radial basis, Å.
    radial_basis_size : int
        R, the number of Chebyshev polynomials.
    radial_funcs_count : int
        K, the number of radial functions f_μ.
    alpha_moments_count : int
        Number of moments (basic and products).
    alpha_index_basic : ndarray of int, shape (n_basic, 4)
        Rows (μ, p, q, w): m = Σ_j f_μ(r_ij) (x/r)^p (y/r)^q (z/r)^w.
    alpha_index_times : ndarray of int, shape (n_times, 4)
        Rows (i0, i1, κ, t): m_t += κ m_i0 m_i1, in order.
    alpha_moment_mapping : ndarray of int, shape (M,)
        Moments that are the scalar basis functions B_α.
    scaling : float
        Factor s of the radial basis (the product of the file's top-level and basis-level values).
    potential_name, potential_tag : str
        Carried through to written files.
    """

    species_count: int
    min_dist: float
    max_dist: float
    radial_basis_size: int
    radial_funcs_count: int
    alpha_moments_count: int
    alpha_index_basic: np.ndarray
    alpha_index_times: np.ndarray
    alpha_moment_mapping: np.ndarray
    scaling: float = 1.0
    potential_name: str = "MTP1m"
    potential_tag: str = ""
    _core: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        for name in ("alpha_index_basic", "alpha_index_times"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int32).reshape(-1, 4))
        object.__setattr__(self, "alpha_moment_mapping",
                           np.asarray(self.alpha_moment_mapping, dtype=np.int32).reshape(-1))

    # θ layout, MTP_SPEC §6
    @property
    def n_radial(self) -> int:
        """Number of radial coefficients S²·K·R."""
        return self.species_count ** 2 * self.radial_funcs_count * self.radial_basis_size

    @property
    def n_params(self) -> int:
        """Length of θ: S²·K·R + S + M."""
        return self.n_radial + self.species_count + len(self.alpha_moment_mapping)

    @property
    def blocks(self) -> dict[str, slice]:
        """Named slices of θ: ``radial``, ``species``, ``moment``."""
        r, s = self.n_radial, self.species_count
        return {"radial": slice(0, r), "species": slice(r, r + s), "moment": slice(r + s, self.n_params)}

    @property
    def basis_function_levels(self) -> np.ndarray:
        """Level of each scalar basis function B_α, shape (M,): Σ over its basic moments of 2 + 4μ + ν
        (MTP_SPEC §3; Shapeev 2016)."""
        lev = np.zeros(self.alpha_moments_count, dtype=int)
        basic = self.alpha_index_basic
        lev[: len(basic)] = 2 + 4 * basic[:, 0] + basic[:, 1:].sum(axis=1)
        for i0, i1, _, t in self.alpha_index_times:
            lev[t] = lev[i0] + lev[i1]
        return lev[self.alpha_moment_mapping]

    @property
    def level(self) -> int:
        """Largest level among the scalar basis functions."""
        return int(self.basis_function_levels.max())

    def with_changes(self, **changes) -> "MTPBasis":
        """A copy with some fields replaced (e.g. species_count, cutoffs)."""
        return replace(self, **changes)

    @property
    def core(self):
        """The compiled :class:`mtpfit._core.Basis` (built once)."""
        if self._core is None:
            from .. import _core

            object.__setattr__(self, "_core", _core.Basis(
                self.species_count, self.radial_funcs_count, self.radial_basis_size, self.min_dist,
                self.max_dist, self.scaling, self.alpha_moments_count, self.alpha_index_basic,
                self.alpha_index_times, self.alpha_moment_mapping))
        return self._core
