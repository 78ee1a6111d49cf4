"""The MTP basis: radial basis settings and the moment contraction graph an ``.mtp`` file defines."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
from ase.data import chemical_symbols

__all__ = ["MTPBasis", "ELEMENTS_TAG", "elements_tag", "tag_elements", "element_symbols"]

#: Prefix of a ``potential_tag`` that names the element of each type: ``potential_tag = elements:C,H``. The tag is
#: one token without spaces or '=' so that every reader of the format keeps it as an opaque string (MLIP-2 and
#: MLIP-3 read the tag as text; motep splits lines on '=' and refuses unknown keys, so a new field would break it).
ELEMENTS_TAG = "elements:"
_ELEMENTS = frozenset(chemical_symbols[1:])  # [0] is ASE's dummy atom "X"


def element_symbols(labels: Sequence) -> list[str] | None:
    """``labels`` as a list when every one is an element symbol (``"Mo"``, not ``"X"`` or ``"0"``), else ``None``."""
    labels = list(labels)
    return labels if labels and all(isinstance(s, str) and s in _ELEMENTS for s in labels) else None


def elements_tag(symbols: Sequence[str]) -> str:
    """The ``potential_tag`` naming the element of each type 0 … S−1, e.g. ``"elements:C,H"``.

    Raises
    ------
    ValueError
        If a label is not an element symbol.
    """
    if element_symbols(symbols) is None:
        raise ValueError(f"an elements tag needs element symbols, got {list(symbols)}")
    return ELEMENTS_TAG + ",".join(symbols)


def tag_elements(tag: str, species_count: int) -> list[str] | None:
    """The element symbols of types 0 … S−1 a ``potential_tag`` names, or ``None`` for a tag that does not start
    with :data:`ELEMENTS_TAG` (any other tag is free text).

    Raises
    ------
    ValueError
        For an elements tag whose entries are not ``species_count`` distinct element symbols.
    """
    if not tag.startswith(ELEMENTS_TAG):
        return None
    symbols = [s.strip() for s in tag[len(ELEMENTS_TAG):].split(",")]
    unknown = [s for s in symbols if s not in _ELEMENTS]
    if unknown:
        raise ValueError(f"potential_tag {tag[:80]!r}: not element symbols: {', '.join(repr(s) for s in unknown)}")
    if len(symbols) != species_count or len(set(symbols)) != len(symbols):
        raise ValueError(f"potential_tag {tag[:80]!r} must name {species_count} distinct elements "
                         f"(species_count = {species_count})")
    return symbols


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
        Carried through to written files. A tag ``elements:C,H`` names the element of each type
        (:func:`tag_elements`, :attr:`elements`); any other tag is free text.

    Raises
    ------
    ValueError
        For an elements tag that does not name ``species_count`` distinct elements.
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
        tag_elements(self.potential_tag, self.species_count)

    @property
    def elements(self) -> list[str] | None:
        """Element symbol of each type 0 … S−1 when :attr:`potential_tag` names them, else ``None``."""
        return tag_elements(self.potential_tag, self.species_count)

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
