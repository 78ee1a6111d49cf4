"""Exact least-squares re-solve of the coefficients an MTP's predictions are linear in.

With the radial coefficients fixed, the site energy V_i = ξ_{t_i} + Σ_α c_α B_α(i) is linear in the species
coefficients ξ and the moment coefficients c, and so are the energy, the forces and the PlusStress (MTP_SPEC §5).
The training loss is then a weighted linear least-squares problem in (ξ, c); MLIP-2 solves it exactly at intervals
during training (Novikov et al., Mach. Learn.: Sci. Technol. 2, 025002 (2021)). This module builds that system
from the objective's own predictions and solves it.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from ..objective.objective import Objective
from ..objective.training_set import residual_weights

__all__ = ["linear_design", "linear_resolve"]


def _linear_slice(objective: Objective) -> slice:
    blocks = objective.mtp.blocks
    species, moment = blocks["species"], blocks["moment"]
    if species.stop != moment.start:
        raise ValueError("the species and moment blocks of θ are expected to be adjacent")
    return slice(species.start, moment.stop)


def _flatten(predictions) -> np.ndarray:
    """Energies, forces and PlusStress of a prediction as one vector, in the order of :func:`_labels`."""
    return np.concatenate([np.ravel(predictions.energies), np.ravel(predictions.forces),
                           np.ravel(predictions.stresses)])


def _labels(objective: Objective) -> tuple[np.ndarray, np.ndarray]:
    """Labels and residual weights, flattened like :func:`_flatten`; a missing label has weight 0."""
    e_label, e_weight, f_label, f_weight, s_label, s_weight = [], [], [], [], [], []
    # the same per-residual weights build_training_set hands to the core
    for config, w in zip(objective.dataset, residual_weights(objective.dataset, objective.loss)):
        n = config.n_atoms
        e_label.append(config.energy if config.energy is not None else 0.0)
        e_weight.append(w.energy)
        f_label.append(np.zeros((n, 3)) if config.forces is None else np.asarray(config.forces, dtype=float))
        f_weight.append(np.broadcast_to(np.asarray(w.forces, dtype=float), (n, 3)))
        s_label.append(np.zeros((3, 3)) if config.plus_stress is None
                       else np.asarray(config.plus_stress, dtype=float))
        s_weight.append(np.broadcast_to(np.asarray(w.stress, dtype=float), (3, 3)))
    labels = np.concatenate([np.array(e_label), np.concatenate(f_label).ravel(), np.ravel(s_label)])
    weights = np.concatenate([np.array(e_weight), np.concatenate(f_weight).ravel(), np.ravel(s_weight)])
    # a label that is absent may be stored as NaN: its weight is 0, keep the product finite
    labels = np.where(weights > 0, labels, 0.0)
    return labels, weights


def linear_design(objective: Objective, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The weighted linear system of the species and moment coefficients at fixed radial coefficients.

    Parameters
    ----------
    objective : Objective
    x : ndarray, shape (n_params,)
        θ; only its radial block is used.

    Returns
    -------
    A : ndarray, shape (n_residuals, S + M)
        Column j is the prediction (energies, forces, PlusStress, flattened) of the potential whose j-th
        species/moment coefficient is 1 and every other species/moment coefficient 0, radial block of ``x``.
        One energy+forces pass per column.
    labels, weights : ndarray, shape (n_residuals,)
        The labels in the same order and the loss's weight of each squared residual (0 where unlabelled).
        The data part of the loss at θ is Σ weights · (A θ_lin − labels)².
    """
    x = np.asarray(x, dtype=float)
    lin = _linear_slice(objective)
    unit = x.copy()
    columns = []
    for j in range(lin.start, lin.stop):
        unit[lin] = 0.0
        unit[j] = 1.0
        columns.append(_flatten(objective.predict(unit)))
    labels, weights = _labels(objective)
    return np.column_stack(columns), labels, weights


def linear_resolve(objective: Objective, x, rcond: float = 1e-12) -> np.ndarray:
    """θ with the species and moment coefficients replaced by the exact weighted least-squares solution.

    Minimises Σ_r w_r (prediction_r − label_r)² over (ξ, c) with the radial coefficients of ``x`` held fixed,
    w_r the residual weights of ``objective.loss`` (zero for missing labels). The orthonormality penalty depends
    on the radial coefficients only, so the result also minimises the full loss over (ξ, c): afterwards
    ∂L/∂ξ = ∂L/∂c = 0 up to round-off.

    Parameters
    ----------
    objective : Objective
    x : ndarray, shape (n_params,)
    rcond : float
        Singular values of the column-equilibrated, √w-scaled design matrix below ``rcond`` times the largest
        are treated as zero.

    Returns
    -------
    ndarray, shape (n_params,)
        A new θ; ``x`` is not modified.

    Notes
    -----
    *Method.* The system is solved as a least-squares problem on the √w-scaled residuals with
    :func:`scipy.linalg.lstsq` (SVD, LAPACK ``gelsd``), not through the normal equations: these square the
    condition number, and the columns of an MTP design matrix (species counts ~N next to products of moments that
    can be orders of magnitude smaller or larger) are badly scaled. Columns are first scaled to unit norm so that
    the rank decision does not depend on their units.

    *Rank deficiency.* Directions the data do not determine — the ξ of a species absent from the data, a
    combination of ξ when every configuration has the same composition, a basis function that vanishes on
    every neighbourhood — give singular values below ``rcond``. The solve is for the *change* of the
    coefficients from their values in ``x``, and ``gelsd`` returns the minimum-norm change (in the
    column-equilibrated units): what the data do not determine keeps its current value instead of jumping to
    zero. An absent species' ξ is left exactly as it was; with one composition n_t for all configurations,
    only Σ_t n_t ξ_t is fitted and the change is spread as n_t Δξ_t = const.

    Cost: S + M energy+forces passes (one per column) and an SVD of an (n_residuals × (S + M)) matrix.
    """
    x = np.array(x, dtype=float)
    lin = _linear_slice(objective)
    A, labels, weights = linear_design(objective, x)
    root = np.sqrt(weights)
    keep = root > 0
    A = A[keep] * root[keep, None]
    current = x[lin]
    rhs = labels[keep] * root[keep] - A @ current      # solve for the change δ: A(current + δ) ≈ labels
    norms = np.linalg.norm(A, axis=0)
    active = norms > 0                 # a coefficient whose column vanishes (absent species) stays as it is
    delta = np.zeros_like(current)
    if np.any(active):
        scaled, *_ = scipy.linalg.lstsq(A[:, active] / norms[active], rhs, cond=rcond, lapack_driver="gelsd")
        delta[active] = scaled / norms[active]
    x[lin] = current + delta
    return x
