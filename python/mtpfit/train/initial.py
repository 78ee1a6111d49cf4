"""Starting points for training."""
from __future__ import annotations

import numpy as np

from ..objective.objective import Objective

__all__ = ["fit_species_energies"]


def fit_species_energies(objective: Objective, x: np.ndarray) -> np.ndarray:
    """θ with the species coefficients ξ set by least squares on the energy labels.

    With the rest of θ fixed, E_k = Σ_t n_kt ξ_t + (moment part), so ξ is the linear
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
    """
    mtp, dataset = objective.mtp, objective.dataset
    labelled = [k for k, c in enumerate(dataset) if c.energy is not None]
    if not labelled:
        raise ValueError(f"{dataset.name}: no energy labels to fit the species energies to")
    S = mtp.basis.species_count
    counts = np.array([np.bincount(mtp.types_of(dataset[k]), minlength=S) for k in labelled], dtype=float)
    species = mtp.blocks["species"]
    predicted = objective.predict(x).energies[labelled]
    moment_part = predicted - counts @ x[species]
    target = np.array([dataset[k].energy for k in labelled]) - moment_part
    solution, *_ = np.linalg.lstsq(counts, target, rcond=None)
    out = x.copy()
    # species absent from the data keep their value (lstsq gives them 0 by minimum norm)
    present = counts.sum(axis=0) > 0
    out[species] = np.where(present, solution, x[species])
    return out
