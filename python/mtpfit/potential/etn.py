"""An ETN-style equivariant tensor-network potential: its hyper-parameters, species and parameter vector θ.

The model is this package's own definition (GitHub issue 19), after the idea of Hodapp & Shapeev, "Equivariant
Tensor Network Potentials", arXiv:2304.08226; no public specification of the exact form exists. The C++ core
(``cpp/etn.hpp``) implements exactly this definition.

Hyper-parameters: species count S; radial basis size R (the Chebyshev basis Q_β(r), β < R, of MTP_SPEC §2 with
``min_dist``, ``max_dist`` = cutoff and scaling 1); L, the largest angular order; N_c channels; d ≥ 2 copies of the
features (body order d + 1); ranks r_1 … r_{d−1} ≥ 1.

* Features of atom i: F_i[l,m,c] = Σ_j R_{l,c}(r_ij; z_i, z_j) Y_lm(r̂_ij), l = 0 … L, m = −l … l, c < N_c, over the
  neighbours 0 < r_ij < ``max_dist``; Y_lm the real orthonormal spherical harmonics (Y_l0 ∝ P_l(cos θ),
  Y_{l,m>0} ∝ P_l^m(cos θ) cos mφ, Y_{l,−m} ∝ P_l^m(cos θ) sin mφ, without the Condon–Shortley phase);
  R_{l,c}(r; a, b) = Σ_β W[a,b,l,c,β] Q_β(r).
* Augmented features F̃: channels c < N_c are F; l = 0 has one more channel c = N_c with F̃[0,0,N_c] = 1, so that
  every body order ≤ d + 1 appears. n_l = N_c + [l = 0].
* Boundary core: h_1[l,m,a] = Σ_{c<n_l} A[l][c,a] F̃[l,m,c], a < r_1.
* Interior cores k = 2 … d−1: h_k[l3,m3,a'] = Σ_{paths (l1,l2,l3)} Σ_{m1,m2} C^{l1 l2 l3}_{m1 m2 m3}
  Σ_{a<r_{k−1}, c<n_{l2}} G_k[path][a,c,a'] h_{k−1}[l1,m1,a] F̃[l2,m2,c], a' < r_k. The paths are every
  0 ≤ l1, l2, l3 ≤ L with |l1 − l2| ≤ l3 ≤ l1 + l2 and l1 + l2 + l3 even, in lexicographic order of (l1, l2, l3);
  C the real Gaunt coefficients ∫ Y_{l1m1} Y_{l2m2} Y_{l3m3} dΩ, computed once by a quadrature exact for them
  (Gauss–Legendre in cos θ × uniform φ). They couple O(3)-equivariantly, so V is invariant under rotations and
  reflections. Each path has its own block G_k[path] of r_{k−1} × n_{l2} × r_k values.
* Site energy: V_i = ξ_{z_i} + Σ_l Σ_m Σ_{a<r_{d−1}, c<n_l} B[l][a,c] h_{d−1}[l,m,a] F̃[l,m,c] (d = 2: no interior
  core); E = Σ_i V_i.
* Forces and PlusStress as for the MTP (MTP_SPEC §5): g_ij = ∂V_i/∂r_ij, F_i = Σ_j g_ij − Σ_k g_ki,
  S = −Σ_i Σ_j g_ij ⊗ r_ij.

θ = [radial W (a, b, l, c, β), S²(L+1)N_c R values | species ξ (S) | cores: A (core 1: l, c, a), G_2 … G_{d−1}
(core k: path, a, c, a'), B (core d: l, a, c)]; :attr:`ETN.blocks` names the slices.
"""
from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.configuration import Configuration
from ..data.neighbors import build_structure
from ..io.errors import FormatError
from .mtp import Prediction, SpeciesLabels, check_prediction, species_labels, type_indices

__all__ = ["ETN", "ETN_FILE_MODEL", "ETN_FILE_VERSION"]

#: The ``model`` entry of an ETN potential file.
ETN_FILE_MODEL = "ETN"
#: The ``version`` of the ETN potential file format this code writes and reads.
ETN_FILE_VERSION = 1

_HYPER = ("radial_basis_size", "max_l", "channels", "copies", "ranks", "min_dist", "max_dist")
_KEYS = ("model", "version", "species", "hyperparameters", "n_params", "theta")


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


class ETN(SpeciesLabels):
    """An ETN-style equivariant tensor-network potential (the definition in this module's docstring).

    Parameters
    ----------
    species : sequence
        The species label of each type 0 … S−1: element symbols (``["Mo", "Nb"]``) or integer type indices (also
        as strings, ``"0"``; :func:`~mtpfit.potential.mtp.species_labels`), as for :class:`~mtpfit.potential.MTP`.
        Their number sets S.
    radial_basis_size : int, optional
        R, the number of Chebyshev radial basis functions.
    max_l : int, optional
        L, the largest angular order, 0 … 10.
    channels : int, optional
        N_c, radial channels per angular order.
    copies : int, optional
        d ≥ 2, the number of feature copies in the tensor train (body order d + 1).
    ranks : int or sequence of int, optional
        r_1 … r_{d−1}; one integer gives every bond that rank.
    min_dist, max_dist : float, optional
        R_min and the cutoff of the radial basis, Å.
    theta : ndarray, shape (n_params,), optional
        Coefficients; :meth:`init_params` with its defaults when omitted.
    source : str, optional
        Where the potential came from (a file), for error messages.

    Raises
    ------
    ValueError
        For a shape the core refuses (naming the hyper-parameter), species labels that repeat, or a θ of the
        wrong length or with non-finite values.
    TypeError
        For a species label that is neither a symbol nor an integer.
    """

    #: The model protocol shared with :class:`~mtpfit.potential.MTP`: the ETN is multilinear in its cores, not
    #: linear in one coefficient block at fixed radial coefficients, so the MTP's variable projection and exact
    #: linear re-solve (:meth:`mtpfit.objective.Objective.linear_system`) do not apply.
    linear_in_coefficients = False
    #: Suffix of the potential file :meth:`write` writes.
    file_suffix = ".etn.json"

    def __init__(self, species: Sequence, radial_basis_size: int = 8, max_l: int = 2, channels: int = 4,
                 copies: int = 3, ranks: int | Sequence[int] = 4, min_dist: float = 2.0, max_dist: float = 5.0,
                 theta: np.ndarray | None = None, source: str | None = None):
        from .. import _core

        self.species = species_labels(species)
        if not self.species or len(set(self.species)) != len(self.species):
            raise ValueError(f"need at least one species and distinct labels, got {self.species}")
        for name, value in (("radial_basis_size", radial_basis_size), ("max_l", max_l), ("channels", channels),
                            ("copies", copies)):
            if not _integer(value):
                raise ValueError(f"ETN shape: {name} must be an integer, got {value!r}")
        if _integer(ranks):
            ranks = [int(ranks)] * max(int(copies) - 1, 0)
        ranks = list(ranks)
        if not all(_integer(r) for r in ranks):
            raise ValueError(f"ETN shape: ranks must be integers, got {ranks!r}")
        self.source = source
        self.core = _core.EtnModel(len(self.species), int(radial_basis_size), int(max_l), int(channels),
                                   int(copies), [int(r) for r in ranks], float(min_dist), float(max_dist))
        self.theta = self.init_params() if theta is None else self._checked(theta)

    def _checked(self, theta) -> np.ndarray:
        theta = np.array(theta, dtype=float)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta has shape {theta.shape}, expected ({self.n_params},)")
        if not np.all(np.isfinite(theta)):
            raise ValueError("theta contains NaN or infinity")
        return theta

    # hyper-parameters --------------------------------------------------------------------------
    @property
    def hyperparameters(self) -> dict:
        """The shape: ``radial_basis_size``, ``max_l``, ``channels``, ``copies``, ``ranks`` (list),
        ``min_dist``, ``max_dist`` (Å); with :attr:`species` they define the potential."""
        c = self.core
        return {"radial_basis_size": c.radial_basis_size, "max_l": c.max_l, "channels": c.channels,
                "copies": c.copies, "ranks": list(c.ranks), "min_dist": c.min_dist, "max_dist": c.max_dist}

    @property
    def species_count(self) -> int:
        """S."""
        return len(self.species)

    @property
    def max_dist(self) -> float:
        """The cutoff, Å."""
        return self.core.max_dist

    @property
    def min_dist(self) -> float:
        """R_min of the radial basis, Å."""
        return self.core.min_dist

    @property
    def n_params(self) -> int:
        """Length of θ."""
        return self.core.n_params

    @property
    def blocks(self) -> dict[str, slice]:
        """Named slices of θ: ``radial`` (W), ``species`` (ξ), ``cores`` (all cores), and ``core_1`` … ``core_d``
        (core 1 is A, core k of 1 < k < d is G_k, core d is B), each core on its own for a sweep over them."""
        c = self.core
        out = {"radial": slice(0, c.n_radial), "species": slice(c.species_offset, c.cores_offset),
               "cores": slice(c.cores_offset, c.n_params)}
        for k in range(1, c.copies + 1):
            out[f"core_{k}"] = slice(c.core_offset(k), c.core_offset(k) + c.core_size(k))
        return out

    def init_params(self, interval: float | None = None, seed: int | None = None) -> np.ndarray:
        """A random initial θ.

        Parameters
        ----------
        interval : float, optional
            A number a gives every θ value uniform in [−a, a] (the optimizer study's "init interval"). ``None``
            (default) gives the scaled start: radial coefficients uniform in ±4/((max_dist − min_dist)² √R), so that
            each R_{l,c}(r) is of order one at the middle of [min_dist, max_dist], where |Q_β| ≤ (max_dist −
            min_dist)²/4, and a feature of the order of the number of neighbours times |Y_lm| ≈ 0.3; species
            coefficients 0; every core entry uniform in ±1/√(fan-in), the fan-in being the number of terms summed
            into one output of the core — n_l for A[l], r_{k−1}·n_{l2}·(number of paths into l3) for G_k[path],
            r_{d−1}·Σ_l n_l (2l + 1) for B — so that each contraction keeps the order of its inputs' products.
        seed : int, optional
            Seed of the draw.

        Returns
        -------
        ndarray, shape (n_params,)

        Raises
        ------
        ValueError
            For a negative or non-finite ``interval``.
        """
        rng = np.random.default_rng(seed)
        if interval is not None:
            interval = float(interval)
            if not 0.0 <= interval < math.inf:
                raise ValueError(f"the init interval must be non-negative and finite, got {interval}")
            return rng.uniform(-interval, interval, self.n_params)
        c, b = self.core, self.blocks
        theta = np.zeros(self.n_params)
        R = c.radial_basis_size
        theta[b["radial"]] = rng.uniform(-4.0, 4.0, c.n_radial) / ((c.max_dist - c.min_dist) ** 2 * math.sqrt(R))
        n = [c.channels + (l == 0) for l in range(c.max_l + 1)]
        ranks, d = list(c.ranks), c.copies
        scale = np.empty(self.n_params - c.cores_offset)
        at = 0
        for l in range(c.max_l + 1):  # A[l]: n_l × r_1
            scale[at:at + n[l] * ranks[0]] = 1.0 / math.sqrt(n[l])
            at += n[l] * ranks[0]
        into = np.bincount([p[2] for p in c.paths], minlength=c.max_l + 1)
        for k in range(2, d):  # G_k[path]: r_{k−1} × n_{l2} × r_k
            for l1, l2, l3 in c.paths:
                size = ranks[k - 2] * n[l2] * ranks[k - 1]
                scale[at:at + size] = 1.0 / math.sqrt(ranks[k - 2] * n[l2] * into[l3])
                at += size
        fan_in = ranks[d - 2] * sum(n[l] * (2 * l + 1) for l in range(c.max_l + 1))
        scale[at:] = 1.0 / math.sqrt(fan_in)  # B[l]: r_{d−1} × n_l
        theta[c.cores_offset:] = rng.uniform(-1.0, 1.0, len(scale)) * scale
        return theta

    def penalty(self, theta: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """The regularisation penalty the trainers add: none for the ETN (the MTP's radial orthonormality penalty,
        MTP_SPEC §6, has no counterpart here).

        Returns
        -------
        value : float
            0.
        gradient : ndarray, shape (n_params,)
            Zeros.
        """
        return 0.0, np.zeros(self.n_params)

    def penalty_residuals(self, theta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The penalty of :meth:`penalty` as a sum of squares: no residuals.

        Returns
        -------
        rho : ndarray, shape (0,)
        jacobian : ndarray, shape (0, n_params)
        """
        return np.zeros(0), np.zeros((0, self.n_params))

    def copy(self, theta: np.ndarray | None = None) -> "ETN":
        """A copy, optionally with other coefficients."""
        return ETN(self.species, theta=self.theta if theta is None else theta, source=self.source,
                   **self.hyperparameters)

    def _relabelled(self, species) -> "ETN":
        return ETN(species, theta=self.theta, source=self.source, **self.hyperparameters)

    # evaluation --------------------------------------------------------------------------------
    def types_of(self, config: Configuration) -> np.ndarray:
        """Type index of every atom of ``config`` (:func:`~mtpfit.potential.mtp.type_indices`).

        Raises
        ------
        ValueError
            If the configuration has a species the potential does not know, naming it.
        """
        return type_indices(config, self.species)

    def structure(self, config: Configuration):
        """The core's neighbour representation of ``config`` at this potential's cutoff
        (:func:`~mtpfit.data.neighbors.build_structure`, as for the MTP).

        Warns (:class:`~mtpfit.data.neighbors.ShortDistanceWarning`) when two atoms are closer than ``min_dist``.

        Raises
        ------
        ValueError
            Naming the configuration: unknown species, a geometry the neighbour list refuses, overlapping atoms.
        """
        return build_structure(config, self.types_of(config), self.max_dist, self.species_count, self.min_dist)

    def evaluate(self, config: Configuration, theta: np.ndarray | None = None, n_threads: int = 1,
                 virials: bool = False, structure=None) -> Prediction:
        """Energy (eV), site energies (eV), forces (eV/Å) and PlusStress (eV) of one configuration.

        Parameters
        ----------
        config : Configuration
        theta : ndarray, shape (n_params,), optional
            Parameters; this potential's own by default.
        n_threads : int, optional
            OpenMP threads over the atoms (0: all); the results are identical bit for bit for every count.
        virials : bool, optional
            Also return the per-atom virials (N, 3, 3), eV, in :attr:`Prediction.atom_virials`, each pair's term
            split half to each of its atoms.
        structure : mtpfit._core.Structure, optional
            The core's neighbour list of ``config`` at this potential's cutoff or beyond, built once by the caller.

        Warns (:class:`~mtpfit.potential.mtp.AbsurdEnergyWarning`) when a site energy is further than
        :data:`~mtpfit.potential.mtp.MAX_SITE_INTERACTION` from its species coefficient, and as :meth:`structure`.

        Raises
        ------
        ValueError
            As :meth:`structure`, for a θ of the wrong length or not finite, a negative ``n_threads``, or a
            ``structure`` of another number of atoms.
        FloatingPointError
            If the prediction is not finite, naming the configuration.
        """
        if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or n_threads < 0:
            raise ValueError(f"n_threads must be an integer >= 0 (0: all cores), got {n_threads!r}")
        theta = self.theta if theta is None else theta
        types = self.types_of(config)
        if structure is None:
            structure = build_structure(config, types, self.max_dist, self.species_count, self.min_dist)
        elif structure.n_atoms != config.n_atoms:
            raise ValueError(f"{config.source}: the neighbour structure has {structure.n_atoms} atoms, the "
                             f"configuration {config.n_atoms}")
        return self._predict(config, theta, types, structure, int(n_threads), bool(virials))

    def _predict(self, config: Configuration, theta, types, structure, n_threads: int, virials: bool) -> Prediction:
        """:meth:`evaluate` once the types and the structure are known (the ASE calculator keeps both)."""
        from .. import _core

        out = _core.evaluate(self.core, theta, structure, n_threads, virials)
        site, forces, stress = out[:3]
        prediction = Prediction(float(site.sum()), site, forces, stress, out[3] if virials else None)
        check_prediction(config, np.asarray(theta)[self.blocks["species"]][types], prediction, stacklevel=4)
        return prediction

    def energy_gradient(self, config: Configuration, theta: np.ndarray | None = None) -> np.ndarray:
        """dE/dθ for one configuration, shape (n_params,), eV per unit of each coefficient."""
        from .. import _core

        return _core.vjp(self.core, self.theta if theta is None else theta, self.structure(config), 1.0)

    # files -------------------------------------------------------------------------------------
    def write(self, path) -> None:
        """Write the potential as a JSON file: ``{"model": "ETN", "version": 1, "species": [...],
        "hyperparameters": {...}, "n_params": n, "theta": [...]}`` (θ exactly, in the layout of the module
        docstring), which :meth:`read` takes back."""
        document = {"model": ETN_FILE_MODEL, "version": ETN_FILE_VERSION, "species": list(self.species),
                    "hyperparameters": self.hyperparameters, "n_params": self.n_params,
                    "theta": [float(x) for x in self.theta]}
        Path(path).write_text(json.dumps(document, indent=1) + "\n")

    @classmethod
    def read(cls, path) -> "ETN":
        """Read a potential file :meth:`write` wrote.

        Raises
        ------
        mtpfit.io.FormatError
            Naming the file: not JSON, not an ETN file of this version, a missing, unknown or mistyped entry, a
            shape the core refuses, or a θ whose length contradicts the shape or that is not finite.
        OSError
            If the file cannot be read.
        """
        path = Path(path)
        try:
            document = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise FormatError(path, f"not a JSON file ({err})") from None
        if not isinstance(document, dict):
            raise FormatError(path, "an ETN potential file holds a JSON object")
        if document.get("model") != ETN_FILE_MODEL:
            raise FormatError(path, f"not an ETN potential file (model {document.get('model')!r}, expected "
                                    f"{ETN_FILE_MODEL!r})")
        if document.get("version") != ETN_FILE_VERSION:
            raise FormatError(path, f"ETN file version {document.get('version')!r} is not supported (this code reads "
                                    f"version {ETN_FILE_VERSION})")
        missing = [k for k in _KEYS if k not in document]
        unknown = sorted(set(document) - set(_KEYS))
        if missing or unknown:
            raise FormatError(path, f"missing entries {missing}, unknown entries {unknown}")
        hyper = document["hyperparameters"]
        if not isinstance(hyper, dict):
            raise FormatError(path, "hyperparameters must be a JSON object")
        missing = [k for k in _HYPER if k not in hyper]
        unknown = sorted(set(hyper) - set(_HYPER))
        if missing or unknown:
            raise FormatError(path, f"hyperparameters: missing {missing}, unknown {unknown}")
        for name in ("radial_basis_size", "max_l", "channels", "copies"):
            if not _integer(hyper[name]):
                raise FormatError(path, f"hyperparameters: {name} must be an integer, got {hyper[name]!r}")
        if not isinstance(hyper["ranks"], list) or not all(_integer(r) for r in hyper["ranks"]):
            raise FormatError(path, f"hyperparameters: ranks must be a list of integers, got {hyper['ranks']!r}")
        for name in ("min_dist", "max_dist"):
            if isinstance(hyper[name], bool) or not isinstance(hyper[name], numbers.Real):
                raise FormatError(path, f"hyperparameters: {name} must be a number, got {hyper[name]!r}")
        species, theta = document["species"], document["theta"]
        if not isinstance(species, list):
            raise FormatError(path, f"species must be a list, got {species!r}")
        if not isinstance(theta, list) or not all(isinstance(x, numbers.Real) and not isinstance(x, bool)
                                                  for x in theta):
            raise FormatError(path, "theta must be a list of numbers")
        if not all(math.isfinite(x) for x in theta):
            raise FormatError(path, "theta contains NaN or infinity")
        try:
            etn = cls(species, source=str(path), **hyper)
        except (TypeError, ValueError) as err:
            raise FormatError(path, str(err)) from None
        if document["n_params"] != etn.n_params or len(theta) != etn.n_params:
            raise FormatError(path, f"the shape has {etn.n_params} parameters; the file's n_params is "
                                    f"{document['n_params']!r} and its theta holds {len(theta)} values")
        etn.theta = np.array(theta, dtype=float)
        return etn

    def __repr__(self) -> str:
        h = self.hyperparameters
        return (f"ETN(species={self.species}, L={h['max_l']}, channels={h['channels']}, d={h['copies']}, "
                f"ranks={h['ranks']}, n_params={self.n_params}, cutoff={h['max_dist']} Å)")
