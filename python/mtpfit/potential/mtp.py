"""The Moment Tensor Potential: a basis, its species and the parameter vector θ."""
from __future__ import annotations

import numbers
import warnings
from importlib import resources
from typing import NamedTuple, Sequence

import numpy as np

from ..data.configuration import Configuration
from ..data.neighbors import build_structure
from .basis import MTPBasis, element_symbols, elements_tag
from .mtp_file import read_mtp, write_mtp

__all__ = ["MTP", "SpeciesLabels", "Prediction", "LEVELS", "MAX_SITE_INTERACTION", "AbsurdEnergyWarning",
           "species_labels", "type_indices", "check_prediction"]

#: Levels with a shipped untrained template (MLIP's ``untrained_mtps``).
LEVELS = (6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28)

#: Coefficient of the radial orthonormality penalty the reference trainer adds per configuration.
PENALTY_PER_CONFIGURATION = 1e-9

#: Largest |E_i − ξ_s| (eV) taken as physics: a site energy's distance from that of the isolated atom of its
#: species (ξ_s, the species coefficient), whatever the energy reference of the training data. Binding energies
#: are ≤ ~10 eV per atom and stay below ~1e2 eV under extreme compression; past 1e3 eV the potential is
#: extrapolating (two atoms 0.5 Å apart give 5e8 eV with the level-8 test potential, min_dist = 2 Å).
MAX_SITE_INTERACTION = 1e3


class AbsurdEnergyWarning(UserWarning):
    """A predicted site energy further than :data:`MAX_SITE_INTERACTION` from its isolated-atom value."""


def species_labels(labels: Sequence) -> list:
    """Species labels as the potential and the data compare them: integers (Python ``int``, also when given as
    numpy integers or as decimal strings such as ``"0"``, the ``.cfg`` type indices) or element symbols
    (stripped ``str``).

    Raises
    ------
    TypeError
        For a label that is neither (``None``, a float, a bool).
    ValueError
        For an empty label.
    """
    out = []
    for label in labels:
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (numbers.Integral, str)):
            raise TypeError(f"a species label is an element symbol or an integer type index, got {label!r} "
                            f"({type(label).__name__})")
        if isinstance(label, str):
            label = label.strip()
            if not label:
                raise ValueError("a species label is empty")
            digits = label[1:] if label[0] in "+-" else label
            label = int(label) if digits.isdecimal() else label
        out.append(int(label) if isinstance(label, numbers.Integral) else label)
    return out


def type_indices(config: Configuration, species: Sequence) -> np.ndarray:
    """Type index of every atom of ``config`` for a potential whose type k has the label ``species[k]``.

    Returns
    -------
    ndarray of int32, shape (N,)

    Raises
    ------
    ValueError
        If the configuration has a species not among ``species``, naming the configuration and the species.
    """
    index = {s: k for k, s in enumerate(species)}
    labels = config.species.tolist()
    try:
        return np.array([index[s] for s in labels], dtype=np.int32)
    except KeyError as err:
        raise ValueError(f"{config.source}: species {err.args[0]!r} is not one of the potential's "
                         f"species {list(species)}") from None


class Prediction(NamedTuple):
    """What the MTP predicts for one configuration."""

    energy: float                 #: eV
    site_energies: np.ndarray     #: (N,), eV
    forces: np.ndarray            #: (N, 3), eV/Å
    plus_stress: np.ndarray       #: (3, 3), eV, virial, positive in compression
    #: (N, 3, 3), eV, or None unless asked for (:meth:`MTP.evaluate` ``virials=True``): W_i = −½ Σ_j g_ij ⊗ r_ij
    #: − ½ Σ_k g_ki ⊗ r_ki, each pair's term of the PlusStress split half to each of its two atoms (the split
    #: of LAMMPS's per-atom virial and of ASE's Lennard-Jones calculator), so that Σ_i W_i = plus_stress.
    atom_virials: np.ndarray | None = None


def check_prediction(config: Configuration, isolated: np.ndarray, prediction: Prediction, stacklevel: int = 2) -> None:
    """Refuse a non-finite prediction of ``config``; warn about absurd site energies.

    Parameters
    ----------
    config : Configuration
        Names the configuration in the messages.
    isolated : ndarray, shape (N,)
        Each atom's isolated-atom energy ξ of its species, eV.
    prediction : Prediction
    stacklevel : int, optional
        Passed to :func:`warnings.warn`: 2 points at the caller of this function.

    Warns (:class:`AbsurdEnergyWarning`) when a site energy is further than :data:`MAX_SITE_INTERACTION` from its
    isolated-atom value.

    Raises
    ------
    FloatingPointError
        If the energy, site energies, forces or stress are not finite, naming the configuration.
    """
    parts = (("energy", prediction.energy), ("site energies", prediction.site_energies),
             ("forces", prediction.forces), ("stress", prediction.plus_stress))
    bad = [name for name, values in parts if not np.isfinite(values).all()]
    if bad:
        raise FloatingPointError(f"{config.source}: the predicted {', '.join(bad)} are not finite; the "
                                 "potential's coefficients or scaling overflow")
    site = prediction.site_energies
    interaction = np.abs(site - isolated)
    k = int(np.argmax(interaction))
    if interaction[k] > MAX_SITE_INTERACTION:
        warnings.warn(f"{config.source}: the site energy of atom {k} is {site[k]:.6g} eV, {interaction[k]:.3g} "
                      f"eV from its isolated-atom value (more than MAX_SITE_INTERACTION = "
                      f"{MAX_SITE_INTERACTION:g} eV): the potential is extrapolating", AbsurdEnergyWarning,
                      stacklevel=stacklevel)


class SpeciesLabels:
    """The species labels of a potential (:class:`MTP`, :class:`~mtpfit.potential.etn.ETN`) and their matching to
    the species of data. The class provides ``species``, ``species_count``, ``source`` and ``_relabelled(species)``
    (a copy with other labels, same shape and θ)."""

    @property
    def named(self) -> bool:
        """Whether the species labels are names (element symbols or other text) rather than type indices."""
        return all(isinstance(s, str) for s in self.species)

    def _where(self) -> str:
        return self.source if self.source is not None else "the potential"

    def with_species(self, species: Sequence):
        """The potential labelled ``species``: they replace integer labels, and must equal names.

        Parameters
        ----------
        species : sequence
            Label of each type 0 … S−1 (see :func:`species_labels`), e.g. from ``--species``.

        Returns
        -------
        same class as the potential
            ``self`` when the labels are already ``species``, else a relabelled copy (same shape and θ).

        Raises
        ------
        ValueError
            If the potential names its species (e.g. the elements an ``.mtp`` file names) and ``species`` differs
            — a different order would swap the physics of the types — naming the source and both lists; if
            ``species`` has the wrong length or repeats.
        TypeError
            For a label that is neither a symbol nor an integer.
        """
        species = species_labels(species)
        if species == self.species:
            return self
        if self.named:
            raise ValueError(f"{self._where()}: species {species} contradict the species the potential names, "
                             f"{self.species} (types 0…{self.species_count - 1} in order)")
        return self._relabelled(species)

    def named_for(self, data_species: Sequence, given: Sequence | None = None):
        """The potential labelled to evaluate data with the species ``data_species``.

        The potential's own names win (``given`` must agree, see :meth:`with_species`); ``given`` labels a
        potential with integer labels. A potential with integer labels and exactly one species, applied to data
        of exactly one element, takes that element, so one-species ``.mtp`` files work on element-labelled data
        without ``--species``.

        Parameters
        ----------
        data_species : sequence
            The species labels found in the data (e.g. :meth:`mtpfit.data.dataset.Dataset.species`).
        given : sequence, optional
            Labels of types 0 … S−1 the user gave (``--species``, ``species=``).

        Returns
        -------
        same class as the potential
            ``self`` or a relabelled copy (same shape and θ) whose labels include every label of the data.

        Raises
        ------
        ValueError
            If ``given`` contradicts the potential's names; if the potential has integer labels, the data element
            symbols and no ``given`` (unless the one-species rule applies), asking for ``--species`` /
            ``species=``; if the data are integer type indices and the potential names its elements, asking to
            read the data with those names; if the data have a species the potential lacks, naming it and the
            potential's species.
        """
        mtp = self if given is None else self.with_species(given)
        data = sorted(set(species_labels(data_species)), key=lambda s: (isinstance(s, str), s))
        names = [s for s in data if isinstance(s, str)]
        if names and not mtp.named:
            if mtp.species_count == 1 and data == names and len(names) == 1:
                return mtp._relabelled(names)
            raise ValueError(f"{mtp._where()} does not name its elements (its {mtp.species_count} types are "
                             f"labelled {mtp.species}) and the data have elements {names}: pass --species / "
                             f"species= with the element of each type 0…{mtp.species_count - 1}")
        missing = [s for s in data if s not in mtp.species]
        if missing and mtp.named and len(names) < len(data):
            raise ValueError(f"the data give type indices {[s for s in data if not isinstance(s, str)]} and "
                             f"{mtp._where()} names its species {mtp.species}: read the data with "
                             f"species={mtp.species} (mtpfit.io.read_configurations) to map type k to species k")
        if missing:
            raise ValueError(f"the data have species {missing} that {mtp._where()} lacks: its species are "
                             f"{mtp.species}")
        return mtp


class MTP(SpeciesLabels):
    """A Moment Tensor Potential (Shapeev 2016; MLIP-2, Novikov et al. 2021).

    θ is one float64 vector laid out as MTP_SPEC §6: ``[radial (a, b, μ, β) | species | moment]``;
    :attr:`blocks` names its slices.

    Parameters
    ----------
    basis : MTPBasis
    theta : ndarray, shape (n_params,), optional
        Coefficients; the MLIP defaults (:meth:`init_params`) when omitted.
    species : sequence, optional
        The species label of each type 0 … S−1: element symbols (``["Mo"]``) or integers (also as strings,
        ``"0"``; see :func:`species_labels`). Defaults to the elements the basis names
        (:attr:`MTPBasis.elements`), else to ``[0, 1, …, S−1]``, which matches ``.cfg`` type indices. Given
        labels are taken as they are; :meth:`with_species` checks them against the potential's names.
    source : str, optional
        Where the potential came from (the ``.mtp`` file), for error messages.

    Raises
    ------
    ValueError
        If ``theta`` has the wrong length or non-finite values, or ``species`` has the wrong length or repeats.
    TypeError
        For a species label that is neither a symbol nor an integer.
    """

    #: The model protocol the objective and the trainers use (shared with :class:`~mtpfit.potential.etn.ETN`):
    #: every prediction is linear in the species and moment coefficients at fixed radial ones, so variable
    #: projection and the exact linear re-solve apply (:meth:`mtpfit.objective.Objective.linear_system`).
    linear_in_coefficients = True
    #: Suffix of the potential file :meth:`write` writes.
    file_suffix = ".mtp"

    def __init__(self, basis: MTPBasis, theta: np.ndarray | None = None, species: Sequence | None = None,
                 source: str | None = None):
        self.basis = basis
        self.source = source
        if species is None:
            species = basis.elements or range(basis.species_count)
        self.species = species_labels(species)
        if len(self.species) != basis.species_count or len(set(self.species)) != len(self.species):
            raise ValueError(f"need {basis.species_count} distinct species labels, got {self.species}")
        self.theta = self.init_params() if theta is None else self._checked(theta)

    def _checked(self, theta) -> np.ndarray:
        theta = np.array(theta, dtype=float)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta has shape {theta.shape}, expected ({self.n_params},)")
        if not np.all(np.isfinite(theta)):
            raise ValueError("theta contains NaN or infinity")
        return theta

    # construction ------------------------------------------------------------------------------
    @classmethod
    def from_level(cls, level: int, species: Sequence = (0,), min_dist: float = 2.0, max_dist: float = 5.0,
                   radial_basis_size: int = 8) -> "MTP":
        """An untrained MTP of a given level from the shipped templates (MLIP ``untrained_mtps``).

        Parameters
        ----------
        level : int
            One of :data:`LEVELS`.
        species : sequence
            Species labels; their number sets S.
        min_dist, max_dist : float
            R_min and cutoff of the radial basis, Å.
        radial_basis_size : int
            Number R of Chebyshev polynomials.

        Raises
        ------
        ValueError
            For a level without a template.
        """
        if level not in LEVELS:
            raise ValueError(f"no template for level {level}; available: {LEVELS}")
        template = resources.files(__package__) / "templates" / f"{level:02d}.almtp"
        with resources.as_file(template) as path:
            basis, _ = read_mtp(path)
        basis = basis.with_changes(species_count=len(species), min_dist=float(min_dist),
                                   max_dist=float(max_dist), radial_basis_size=int(radial_basis_size))
        return cls(basis, species=species)

    @classmethod
    def read(cls, path, species: Sequence | None = None) -> "MTP":
        """Read an ``.mtp`` file (trained or untrained; untrained files get the MLIP defaults).

        Parameters
        ----------
        path : str or Path
        species : sequence, optional
            Species labels of types 0 … S−1 (:meth:`with_species`). A file that names its elements
            (``potential_tag = elements:C,H``) is labelled with them; ``species`` must then agree. A file that
            does not is labelled ``species``, else ``[0, 1, …, S−1]``.

        Raises
        ------
        mtpfit.io.FormatError
            On a malformed file, naming the file and line.
        ValueError
            If ``species`` contradicts the elements the file names, naming the file and both lists, or has the
            wrong length.
        """
        basis, theta = read_mtp(path)
        mtp = cls(basis, theta, source=str(path))
        return mtp if species is None else mtp.with_species(species)

    def write(self, path) -> None:
        """Write a trained ``.mtp`` file that MLIP-2, MLIP-3 and LAMMPS ``pair_style mtp`` read.

        When the species labels are element symbols they are written as ``potential_tag = elements:C,H``
        (types 0 … S−1 in order), which :meth:`read` takes back and the other readers keep as an opaque tag;
        otherwise the basis's own tag is written, except an elements tag the labels no longer match.
        """
        symbols = element_symbols(self.species)
        if symbols is not None:
            tag = elements_tag(symbols)
        else:
            tag = "" if self.basis.elements is not None else self.basis.potential_tag
        write_mtp(path, self.basis.with_changes(potential_tag=tag), self.theta)

    def copy(self, theta: np.ndarray | None = None) -> "MTP":
        """A copy, optionally with other coefficients."""
        return MTP(self.basis, self.theta if theta is None else theta, self.species, self.source)

    def _relabelled(self, species) -> "MTP":
        return MTP(self.basis, self.theta, species, self.source)

    # parameters --------------------------------------------------------------------------------
    @property
    def core(self):
        """The compiled model (:class:`mtpfit._core.Basis`) the core's passes take."""
        return self.basis.core

    @property
    def species_count(self) -> int:
        """S."""
        return self.basis.species_count

    @property
    def max_dist(self) -> float:
        """The cutoff, Å."""
        return self.basis.max_dist

    @property
    def min_dist(self) -> float:
        """R_min of the radial basis, Å."""
        return self.basis.min_dist

    @property
    def n_params(self) -> int:
        """Length of θ."""
        return self.basis.n_params

    @property
    def blocks(self) -> dict[str, slice]:
        """Named slices of θ: ``radial``, ``species``, ``moment``."""
        return self.basis.blocks

    def init_params(self, interval: float | None = None, seed: int | None = None) -> np.ndarray:
        """Initial θ.

        Parameters
        ----------
        interval : float, optional
            ``None`` gives the MLIP load defaults (MTP_SPEC §6): radial coefficients 1e-6
            except c^{ab}_{μ,β=μ} = 1e-3, species and moment coefficients 1e-3. A number a gives
            θ uniform in [−a, a] (the optimizer study's "init interval").
        seed : int, optional
            Seed of the uniform draw.

        Returns
        -------
        ndarray, shape (n_params,)
        """
        b = self.basis
        if interval is not None:
            return np.random.default_rng(seed).uniform(-interval, interval, self.n_params)
        radial = np.full((b.species_count ** 2, b.radial_funcs_count, b.radial_basis_size), 1e-6)
        diagonal = np.arange(min(b.radial_funcs_count, b.radial_basis_size))
        radial[:, diagonal, diagonal] = 1e-3
        return np.concatenate([radial.ravel(), np.full(self.n_params - b.n_radial, 1e-3)])

    def penalty(self, theta: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Orthonormality penalty of the radial functions and its gradient (MTP_SPEC §6).

        P = Σ_μ (‖c_μ‖² − 1)² + Σ_{μ<ν} (c_μ · c_ν)², c_μ the concatenation over all species
        pairs of the coefficients of radial function μ.

        Returns
        -------
        value : float
        gradient : ndarray, shape (n_params,)
        """
        b = self.basis
        theta = self.theta if theta is None else theta
        radial = theta[b.blocks["radial"]].reshape(b.species_count ** 2, b.radial_funcs_count, b.radial_basis_size)
        c = radial.transpose(1, 0, 2).reshape(b.radial_funcs_count, -1)
        gram = c @ c.T
        diag = np.diag(gram) - 1.0
        off = gram - np.diag(np.diag(gram))
        value = float(np.sum(diag ** 2) + 0.5 * np.sum(off ** 2))
        dc = 4.0 * diag[:, None] * c + 2.0 * off @ c
        gradient = np.zeros_like(theta)
        gradient[b.blocks["radial"]] = dc.reshape(b.radial_funcs_count, b.species_count ** 2,
                                                  b.radial_basis_size).transpose(1, 0, 2).ravel()
        return value, gradient

    def penalty_residuals(self, theta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The penalty of :meth:`penalty` as a sum of squares P = Σ ρ², and the Jacobian dρ/dθ.

        ρ holds ‖c_μ‖² − 1 for every radial function μ, then c_μ · c_ν for μ < ν (row-major pairs).

        Returns
        -------
        rho : ndarray, shape (R + R(R−1)/2,)
            R = ``radial_funcs_count``.
        jacobian : ndarray, shape (R + R(R−1)/2, n_params)
        """
        b = self.basis
        theta = self.theta if theta is None else theta
        R, pairs, size = b.radial_funcs_count, b.species_count ** 2, b.radial_basis_size
        start = b.blocks["radial"].start
        # θ index of coefficient β of radial function μ for species pair p: start + (p·R + μ)·size + β
        index = start + (np.arange(pairs)[:, None, None] * R + np.arange(R)[None, :, None]) * size \
            + np.arange(size)[None, None, :]
        index = index.transpose(1, 0, 2).reshape(R, -1)
        c = theta[index]
        upper = np.triu_indices(R, 1)
        gram = c @ c.T
        rho = np.concatenate([np.diag(gram) - 1.0, gram[upper]])
        jacobian = np.zeros((len(rho), len(theta)))
        for mu in range(R):
            jacobian[mu, index[mu]] = 2.0 * c[mu]
        for row, (mu, nu) in enumerate(zip(*upper), start=R):
            jacobian[row, index[mu]] = c[nu]
            jacobian[row, index[nu]] = c[mu]
        return rho, jacobian

    # evaluation --------------------------------------------------------------------------------
    def types_of(self, config: Configuration) -> np.ndarray:
        """Type index of every atom of ``config``.

        Raises
        ------
        ValueError
            If the configuration has a species the potential does not know, naming it.
        """
        return type_indices(config, self.species)

    def structure(self, config: Configuration):
        """The core's neighbour representation of ``config`` at this potential's cutoff.

        Warns (:class:`~mtpfit.data.neighbors.ShortDistanceWarning`) when two atoms are closer than ``min_dist``.

        Raises
        ------
        ValueError
            Naming the configuration: unknown species, a geometry or neighbour-list size the neighbour list
            refuses (:func:`~mtpfit.data.neighbors.neighbor_pairs`), overlapping atoms.
        """
        return self._structure(config, self.types_of(config))

    def _structure(self, config: Configuration, types: np.ndarray):
        b = self.basis
        return build_structure(config, types, b.max_dist, b.species_count, b.min_dist)

    def evaluate(self, config: Configuration, theta: np.ndarray | None = None, n_threads: int = 1,
                 virials: bool = False, structure=None) -> Prediction:
        """Energy, site energies, forces and PlusStress of one configuration.

        Parameters
        ----------
        config : Configuration
        theta : ndarray, shape (n_params,), optional
            Parameters; this potential's own by default.
        n_threads : int, optional
            OpenMP threads over the atoms (0: all, ``OMP_NUM_THREADS`` if set). The results are identical bit
            for bit for every thread count: each atom sums its own pair terms in a fixed order
            (``evaluate_structure_parallel`` in ``cpp/site_kernel.hpp``). Default 1, as callers that evaluate
            many configurations usually parallelise over them.
        virials : bool, optional
            Also return the per-atom virials in :attr:`Prediction.atom_virials`.
        structure : mtpfit._core.Structure, optional
            The core's neighbour list of ``config`` at this potential's cutoff or beyond (:meth:`structure`,
            :class:`~mtpfit.data.neighbors.VerletNeighbors`), built once by the caller; built here by default.

        Warns (:class:`AbsurdEnergyWarning`) when a site energy is further than :data:`MAX_SITE_INTERACTION`
        from its isolated-atom value, and as :meth:`structure` does.

        Raises
        ------
        ValueError
            As :meth:`structure`, for a non-finite θ, a negative ``n_threads``, or a ``structure`` of another
            number of atoms.
        FloatingPointError
            If the prediction is not finite (coefficients or scaling that overflow), naming the configuration.
        """
        if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or n_threads < 0:
            raise ValueError(f"n_threads must be an integer >= 0 (0: all cores), got {n_threads!r}")
        theta = self.theta if theta is None else theta
        types = self.types_of(config)
        if structure is None:
            structure = self._structure(config, types)
        elif structure.n_atoms != config.n_atoms:
            raise ValueError(f"{config.source}: the neighbour structure has {structure.n_atoms} atoms, the "
                             f"configuration {config.n_atoms}")
        return self._predict(config, theta, types, structure, int(n_threads), bool(virials))

    def _predict(self, config: Configuration, theta, types, structure, n_threads: int, virials: bool) -> Prediction:
        """:meth:`evaluate` once the types and the structure are known (the calculator keeps both)."""
        from .. import _core

        out = _core.evaluate(self.basis.core, theta, structure, n_threads, virials)
        site, forces, stress = out[:3]
        prediction = Prediction(float(site.sum()), site, forces, stress, out[3] if virials else None)
        self._check_prediction(config, theta, types, prediction)
        return prediction

    def _check_prediction(self, config: Configuration, theta, types, prediction: Prediction) -> None:
        """Refuse a non-finite prediction of ``config`` and warn about absurd site energies (see
        :meth:`evaluate`)."""
        check_prediction(config, np.asarray(theta)[self.blocks["species"]][types], prediction, stacklevel=4)

    def energy_gradient(self, config: Configuration, theta: np.ndarray | None = None) -> np.ndarray:
        """dE/dθ for one configuration, shape (n_params,), eV per unit of each coefficient."""
        from .. import _core

        return _core.vjp(self.basis.core, self.theta if theta is None else theta, self.structure(config), 1.0)

    def force_vjp(self, config: Configuration, a: np.ndarray,
                  theta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Both derivatives of the scalar a·F, F the forces, for a fixed cotangent a.

        Parameters
        ----------
        config : Configuration
            The atoms; the cell is held fixed.
        a : ndarray, shape (N, 3)
            Cotangent of the forces (the units of a loss derivative per eV/Å).
        theta : ndarray, optional
            Parameters; this potential's own by default.

        Returns
        -------
        grad_theta : ndarray, shape (n_params,)
            a·∂F/∂θ.
        grad_x : ndarray, shape (N, 3)
            a·∂F/∂X (per Å). ∂F/∂X = −∇²E is symmetric, so this is also −∇²E·a: the exact Hessian–vector
            product of the energy in the atomic positions, second derivatives of the radial basis included
            (the derivation is in ``cpp/site_kernel.cpp``, ``SiteKernel::second_order_batch``).

        Raises
        ------
        ValueError
            If ``a`` is not (N, 3) or θ is not finite.
        """
        from .. import _core

        a = np.asarray(a, dtype=float)
        if a.shape != (config.n_atoms, 3):
            raise ValueError(f"{config.source}: the force cotangent has shape {a.shape}, expected "
                             f"({config.n_atoms}, 3)")
        return _core.force_vjp(self.basis.core, self.theta if theta is None else theta, self.structure(config), a)

    def __repr__(self) -> str:
        return (f"MTP(level={self.basis.level}, species={self.species}, n_params={self.n_params}, "
                f"cutoff={self.basis.max_dist} Å)")
