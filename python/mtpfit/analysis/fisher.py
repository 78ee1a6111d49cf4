"""Fisher information of a trained MTP or ETN: spectrum, sloppiness, effective number of parameters, sensitivities.

For the weighted least-squares loss L = Σ w r², with residuals read as Gaussian noise of variance 1/(2w), the
Fisher information matrix is F = 2 JᵀWJ, the Gauss–Newton Hessian of L (Transtrum, Machta & Sethna 2011,
Phys. Rev. E 83, 036701). Its eigenvalues span many decades for "sloppy" models; Wang, Transtrum et al.
(arXiv:2504.19372) use the spectrum to size MLIPs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..optim.blocks import ParameterBlocks

__all__ = ["FisherAnalysis", "analyse_fisher"]


@dataclass
class FisherAnalysis:
    """The Fisher information F = 2 JᵀWJ at θ and what is read off it.

    Attributes
    ----------
    theta : ndarray, shape (P,)
    loss : float
    fisher : ndarray, shape (P, P)
        F, in units of the loss per parameter unit squared.
    eigenvalues : ndarray, shape (P,)
        Descending.
    eigenvectors : ndarray, shape (P, P)
        Columns, matching ``eigenvalues``.
    blocks : dict of str to slice
        The θ blocks, a partition of θ (:meth:`mtpfit.optim.ParameterBlocks.of`): ``radial``, ``species``,
        ``moment`` for an MTP; ``radial``, ``species``, ``core_1`` … ``core_d`` for an ETN.
    levels : ndarray of int, shape (M,)
        Level of each moment coefficient's basis function (an MTP; empty for an ETN).
    """

    theta: np.ndarray
    loss: float
    fisher: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    blocks: dict
    levels: np.ndarray

    @property
    def n_params(self) -> int:
        return len(self.theta)

    def decades(self, floor: float = 1e-14) -> float:
        """Decades spanned by the eigenvalues above ``floor``·λ_max (round-off level): the "sloppiness"."""
        lam = self.eigenvalues[self.eigenvalues > floor * self.eigenvalues[0]]
        return float(np.log10(lam[0] / lam[-1]))

    def stiff_count(self, decades: float = 6.0) -> int:
        """Eigenvalues within ``decades`` of λ_max: directions the data determine."""
        return int(np.sum(self.eigenvalues >= self.eigenvalues[0] * 10.0 ** (-decades)))

    def effective_parameters(self, alpha: float | None = None) -> float:
        """MacKay's γ = Σ λ_i / (λ_i + α) (MacKay 1992, *Neural Comput.* 4, 415): the number of well-determined
        parameters under a Gaussian prior of precision α; default α = L (the loss at θ) · 2 / P, the precision
        that gives every parameter the prior weight of the average residual."""
        alpha = 2.0 * self.loss / self.n_params if alpha is None else alpha
        lam = np.clip(self.eigenvalues, 0.0, None)
        return float(np.sum(lam / (lam + alpha)))

    def participation_ratio(self) -> float:
        """(Σλ)² / Σλ²: how many eigen-directions share the information."""
        lam = np.clip(self.eigenvalues, 0.0, None)
        return float(lam.sum() ** 2 / np.sum(lam ** 2))

    def block_trace_fraction(self) -> dict[str, float]:
        """Share of tr F in each block: the loss's sensitivity to each kind of coefficient."""
        diag, total = np.diag(self.fisher), np.trace(self.fisher)
        return {name: float(diag[s].sum() / total) for name, s in self.blocks.items()}

    def block_share_of_stiff_directions(self, decades: float = 6.0) -> dict[str, float]:
        """Mean weight Σ_{i∈block} v_ik² of each block over the stiff eigenvectors (λ within ``decades``)."""
        v = self.eigenvectors[:, :self.stiff_count(decades)]
        return {name: float(np.mean(np.sum(v[s] ** 2, axis=0))) for name, s in self.blocks.items()}

    def basis_function_sensitivity(self) -> np.ndarray:
        """θ_α² F_αα per moment coefficient, shape (M,): the loss curvature of a relative change of c_α (the
        log-parameter sensitivity), in units of the loss.

        Raises
        ------
        ValueError
            For a model without moment coefficients (an ETN).
        """
        if "moment" not in self.blocks:
            raise ValueError("basis_function_sensitivity: the model has no moment coefficients (an MTP's); read "
                             "block_trace_fraction() for an ETN's cores")
        s = self.blocks["moment"]
        return self.theta[s] ** 2 * np.diag(self.fisher)[s]

    def summary(self) -> dict:
        """The scalar figures, for tables."""
        return {"n_params": self.n_params, "loss": self.loss, "lambda_max": float(self.eigenvalues[0]),
                "lambda_min": float(self.eigenvalues[-1]), "decades": self.decades(),
                "stiff_6_decades": self.stiff_count(6.0), "effective_parameters": self.effective_parameters(),
                "participation_ratio": self.participation_ratio(),
                **{f"trace_fraction_{k}": v for k, v in self.block_trace_fraction().items()},
                **{f"stiff_share_{k}": v for k, v in self.block_share_of_stiff_directions().items()}}


def analyse_fisher(objective, x) -> FisherAnalysis:
    """The Fisher information of ``objective``'s loss at θ = x and its eigen-decomposition.

    Parameters
    ----------
    objective : Objective
        Loss over the data the information is about.
    x : ndarray, shape (n_params,)

    Returns
    -------
    FisherAnalysis

    Notes
    -----
    Cost: one :meth:`~mtpfit.objective.Objective.gauss_newton` (≈ 3N + 10 loss+gradient passes for N-atom
    configurations) and a dense symmetric eigen-decomposition (P³).
    """
    x = np.asarray(x, dtype=float)
    loss, JtWJ, _ = objective.gauss_newton(x)
    fisher = 2.0 * JtWJ
    values, vectors = scipy.linalg.eigh(fisher)
    order = np.argsort(values)[::-1]
    model = objective.model
    levels = model.basis.basis_function_levels if hasattr(model, "basis") else np.zeros(0, dtype=int)
    return FisherAnalysis(theta=x, loss=loss, fisher=fisher, eigenvalues=values[order],
                          eigenvectors=vectors[:, order], blocks=dict(ParameterBlocks.of(model).slices),
                          levels=levels)
