"""Starting points for training."""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..objective.objective import Objective
from ..objective.training_set import residual_weights
from ..optim import OPTIMIZERS
from ..optim.linear import linear_resolve, radial_scale

__all__ = ["STARTS", "SELF_STARTING", "UnderdeterminedSpeciesWarning", "default_start", "starting_point",
           "unit_radial", "fit_species_energies"]


class UnderdeterminedSpeciesWarning(UserWarning):
    """The energy labels determine only combinations of the species energies ξ_s, not each one.

    E_k = Σ_s n_ks ξ_s + (moment part), so ξ is determined only if the composition matrix n_ks (configurations ×
    species present) has full column rank. When every configuration has the same composition ratios (a
    molecule, a fixed-stoichiometry crystal) only the composition-weighted sum Σ_s n_s ξ_s is: moving energy
    from one species to another leaves every prediction unchanged, and the ξ_s chosen are a convention.

    Attributes
    ----------
    species : list
        The species present in the labelled configurations.
    rank : int
        The rank of their composition matrix (< ``len(species)``).
    """

    def __init__(self, message: str, species: list | None = None, rank: int = 0):
        super().__init__(message)
        self.species, self.rank = list(species or []), rank


#: Choices of :func:`starting_point`.
STARTS = ("resolve", "species", "none")

#: Trainers that solve the linear coefficients of their starting point themselves: :func:`starting_point` leaves
#: their x0 alone.
SELF_STARTING = frozenset({"native-bfgs", "varpro", "varpro-LM"})


def default_start(method: str | None = None, model: str = "mtp") -> str:
    """The default starting point of the trainer ``method`` (a hybrid: its first stage) for a ``model`` of that
    kind (``"mtp"`` or ``"etn"``).

    ``"species"`` for every trainer of an ETN (it has no exact linear re-solve: its predictions are multilinear in
    its cores). For an MTP, ``"resolve"`` for the full-batch trainers, ``"species"`` for the mini-batch optimizers
    of the zoo: their
    per-coordinate steps break the cancellations of an exactly re-solved start (mlearn Mo, level 10: Adam from the
    re-solved MLIP defaults goes from loss 0.63 to 5e5–2e9 in 5 epochs for learning rates 1e-5 to 1e-2, while from
    the species fit it descends, 14.6 → 3.5 at 1e-2).
    """
    first = (method or "").partition("+")[0]
    return "species" if model == "etn" or first in OPTIMIZERS else "resolve"


def unit_radial(objective: Objective, x: np.ndarray) -> np.ndarray:
    """``x`` with the radial block scaled so that the radial functions have unit RMS norm (MLIP-2's convention).

    Every basis function is a homogeneous polynomial in the radial coefficients, so after a re-solve of the linear
    coefficients the model, and the loss up to the 1e-9 orthonormality penalty, do not depend on this scale; it
    keeps the re-solved moment coefficients moderate: from MLIP's default radial coefficients (1e-3) they would be
    ~1e6 on mlearn Mo at level 10 (1.2 after scaling), and on the 3-species level-6 test set Levenberg–Marquardt then
    stops after one iteration on its relative step test.
    """
    out = np.array(x, dtype=float)
    out[objective.mtp.blocks["radial"]] /= radial_scale(objective.mtp, out)
    return out


def starting_point(objective: Objective, x0: np.ndarray, start: str | None = None,
                   method: str | None = None) -> np.ndarray:
    """The θ a trainer starts from.

    Parameters
    ----------
    objective : Objective
    x0 : ndarray, shape (n_params,)
        The initial θ (MLIP defaults, a random draw or a read potential).
    start : {"resolve", "species", "none"}, optional
        ``"resolve"``: the radial functions scaled to unit norm (:func:`unit_radial`), then the species and moment
        coefficients set to their exact weighted least-squares values
        (:func:`~mtpfit.optim.linear.linear_resolve`): the lowest loss reachable without changing the shapes of the
        radial functions. ``"species"``: only the species energies fitted to the energy labels
        (:func:`fit_species_energies`). ``"none"``: ``x0`` as given. Default: :func:`default_start` of ``method``
        and the objective's model (``"species"`` for an ETN, which has no linear re-solve).
    method : str, optional
        The trainer's name (a hybrid's ``FIRST+SECOND``): when its first stage is one of
        :data:`SELF_STARTING` (the native BFGS re-solves its own start), ``x0`` is returned as given.

    Returns
    -------
    ndarray, shape (n_params,)
        A new array; ``x0`` is not modified.

    Raises
    ------
    ValueError
        For an unknown ``start``, ``"species"`` without energy labels, or ``"resolve"`` for a model not linear in
        its coefficients (an ETN).

    Warns
    -----
    UnderdeterminedSpeciesWarning
        Once, for ``"resolve"`` and ``"species"``, when the compositions of the configurations with a weighted
        energy do not determine each species energy (every configuration of the same composition ratios).
    """
    linear = objective.model.linear_in_coefficients
    start = default_start(method, "mtp" if linear else "etn") if start is None else start
    if start not in STARTS:
        raise ValueError(f"unknown start {start!r}; choose from {', '.join(STARTS)}")
    if start == "resolve" and not linear:
        raise ValueError(f"start 'resolve' (the exact linear re-solve) needs a model linear in its coefficients (an "
                         f"MTP); {type(objective.model).__name__} is multilinear in its cores: use 'species' or "
                         "'none'")
    x0 = np.array(x0, dtype=float)
    if start == "none" or (method is not None and method.partition("+")[0] in SELF_STARTING):
        return x0
    if start == "species":
        return fit_species_energies(objective, x0)
    weights = residual_weights(objective.dataset, objective.loss)
    weighted = [k for k, c in enumerate(objective.dataset) if c.energy is not None and weights[k].energy > 0]
    if weighted:
        _check_species_rank(objective, _composition(objective, weighted),
                            "the re-solve changes only what the data determine (the minimum-norm change): the "
                            "undetermined combinations keep their starting values")
    return linear_resolve(objective, unit_radial(objective, x0))


def fit_species_energies(objective: Objective, x: np.ndarray) -> np.ndarray:
    """θ with the species coefficients ξ set by least squares on the energy labels.

    With the rest of θ fixed, E_k = Σ_t n_kt ξ_t + (moment part) (for an MTP; for an ETN the tensor-train part), so
    ξ is the linear
    least-squares solution of the composition matrix n_kt against the energy labels minus the
    moment part. This removes the large per-atom energy offset of DFT energies (≈ −10 eV/atom)
    before the non-linear optimizer starts, the usual "reference energies" fit.

    Parameters
    ----------
    objective : Objective
    x : ndarray, shape (n_params,)

    Returns
    -------
    ndarray, shape (n_params,)
        A copy of ``x`` with the species block replaced.

    Raises
    ------
    ValueError
        If no configuration has an energy label.

    Warns
    -----
    UnderdeterminedSpeciesWarning
        When the composition matrix has a rank below the number of species present (e.g. every configuration
        has the same composition ratios): only combinations of ξ are determined, and the minimum-norm
        least-squares solution is the one returned.
    """
    mtp, dataset = objective.mtp, objective.dataset
    labelled = [k for k, c in enumerate(dataset) if c.energy is not None]
    if not labelled:
        raise ValueError(f"{dataset.name}: no energy labels to fit the species energies to")
    counts = _composition(objective, labelled)
    species = mtp.blocks["species"]
    predicted = objective.predict(x).energies[labelled]
    moment_part = predicted - counts @ x[species]
    target = np.array([dataset[k].energy for k in labelled]) - moment_part
    solution, *_ = np.linalg.lstsq(counts, target, rcond=None)
    out = x.copy()
    # species absent from the data keep their value (lstsq gives them 0 by minimum norm)
    present = counts.sum(axis=0) > 0
    out[species] = np.where(present, solution, x[species])
    _check_species_rank(objective, counts, "the minimum-norm solution is chosen: ξ = " + ", ".join(
        f"{mtp.species[t]}: {out[species][t]:.6g}" for t in np.flatnonzero(present)) + " eV")
    return out


def _composition(objective: Objective, indices: list[int]) -> np.ndarray:
    """Atoms of each species (columns, the potential's types) in each configuration ``indices`` (rows)."""
    mtp = objective.mtp
    return np.array([np.bincount(mtp.types_of(objective.dataset[k]), minlength=mtp.species_count)
                     for k in indices], dtype=float)


def _check_species_rank(objective: Objective, counts: np.ndarray, resolution: str) -> None:
    """An :class:`UnderdeterminedSpeciesWarning` when ``counts`` (configurations × types) has a rank below the
    number of species present; ``resolution`` says which ξ is then chosen."""
    present = np.flatnonzero(counts.sum(axis=0) > 0)
    # integer counts: the default tolerance of the rank decision is far below any integer combination
    rank = int(np.linalg.matrix_rank(counts[:, present]))
    if rank == len(present):
        return
    names = [objective.mtp.species[t] for t in present]
    if rank == 1:
        first = counts[0, present].astype(int)
        ratio = ":".join(str(n // math.gcd(*first)) for n in first)
        why = (f"all {len(counts)} configurations with an energy have the composition {':'.join(map(str, names))} "
               f"= {ratio}, so the energies fix only the composition-weighted sum Σ_s n_s ξ_s")
    else:
        why = (f"the compositions of the {len(counts)} configurations with an energy span only {rank} of "
               f"{len(present)} dimensions, so the energies fix only {rank} combinations of them")
    warnings.warn(UnderdeterminedSpeciesWarning(
        f"{objective.dataset.name}: the species energies ξ of {', '.join(map(str, names))} are not determined "
        f"separately: {why}; {resolution}", names, rank), stacklevel=3)
