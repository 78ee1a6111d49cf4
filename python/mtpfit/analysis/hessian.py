"""Hessian spectra of the loss, plain and preconditioned: Lanczos for the extreme eigenvalues, stochastic
Lanczos quadrature for the spectral density, and the preconditioners the optimizers build.

Liu et al. (arXiv:2512.05489) read an optimizer as a preconditioner P that reshapes the spectrum the iteration
sees, that of P^{1/2} H P^{1/2}; a good preconditioner compresses it (small condition number).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import scipy.linalg

__all__ = ["HessianSpectrum", "hessian_spectrum", "lanczos", "adam_preconditioner", "soap_preconditioner",
           "dense_preconditioner", "find_state"]

#: Applies P^{1/2} (symmetric) to a vector of θ's shape.
SqrtPreconditioner = Callable[[np.ndarray], np.ndarray]


def lanczos(matvec: Callable[[np.ndarray], np.ndarray], v0: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Lanczos tridiagonalisation with full re-orthogonalisation (Golub & Van Loan 2013, §10.1).

    Parameters
    ----------
    matvec : callable
        v ↦ A v for a symmetric A of size n.
    v0 : ndarray, shape (n,)
        Start vector (normalised here).
    steps : int
        At most this many steps (fewer when an invariant subspace is found).

    Returns
    -------
    nodes, weights : ndarray, shape (k,)
        Eigenvalues θ_j of the tridiagonal matrix T_k and the squared first components of its eigenvectors:
        the Gauss quadrature of the spectral measure of A seen from v0 (Golub & Meurant 2010).
    """
    n = len(v0)
    steps = min(steps, n)
    V = np.zeros((steps, n))
    alpha, beta = np.zeros(steps), np.zeros(steps)
    v = v0 / np.linalg.norm(v0)
    k = 0
    for k in range(steps):
        V[k] = v
        w = matvec(v)
        alpha[k] = v @ w
        w -= V[:k + 1].T @ (V[:k + 1] @ w)
        w -= V[:k + 1].T @ (V[:k + 1] @ w)
        b = np.linalg.norm(w)
        if k + 1 == steps or b < 1e-12 * max(abs(alpha[:k + 1]).max(), 1e-300):
            break
        beta[k] = b
        v = w / b
    k += 1
    nodes, vectors = scipy.linalg.eigh_tridiagonal(alpha[:k], beta[:k - 1])
    return nodes, vectors[0] ** 2


@dataclasses.dataclass
class HessianSpectrum:
    """Spectrum of P^{1/2} H P^{1/2} (H the loss Hessian at θ; P = I for the plain Hessian).

    Attributes
    ----------
    name : str
        The preconditioner.
    largest, smallest : ndarray
        Extreme Ritz values of a Lanczos run, descending and ascending.
    nodes, weights : ndarray, shape (probes, steps)
        Stochastic Lanczos quadrature: per Rademacher probe, the Ritz values and their weights (each row sums
        to 1), the spectral density being their average (Ubaru, Chen & Saad 2017; Ghorbani et al. 2019).
    n_hessp : int
        Hessian–vector products used.
    """

    name: str
    largest: np.ndarray
    smallest: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    n_hessp: int

    @property
    def condition_number(self) -> float:
        """Condition number of the positive part, λ_max / λ⁺_min, λ⁺_min the smallest positive eigenvalue found
        (among the smallest-algebraic ones from eigsh, else among the quadrature nodes of non-negligible weight;
        ∞ if none)."""
        positive = self.smallest[self.smallest > 0]
        if not len(positive):
            nodes = self.nodes[(self.nodes > 0) & (self.weights > 1e-8)]
            positive = np.sort(nodes)
        return float(self.largest[0] / positive[0]) if len(positive) else np.inf

    @property
    def negative_mass(self) -> float:
        """Share of the spectral density below zero (directions of negative curvature)."""
        return float(np.sum(self.weights[self.nodes < 0]) / np.sum(self.weights))

    def density(self, grid: np.ndarray, width: float = 0.1) -> np.ndarray:
        """Density of log10|λ| on ``grid``, Gaussian-broadened by ``width`` decades, split by sign:
        shape (2, len(grid)) for λ > 0 and λ < 0."""
        out = np.zeros((2, len(grid)))
        x = np.log10(np.abs(self.nodes) + 1e-300)
        for sign, row in ((1, 0), (-1, 1)):
            mask = np.sign(self.nodes) == sign
            diff = (grid[:, None] - x[mask][None, :]) / width
            out[row] = (np.exp(-0.5 * diff ** 2) * self.weights[mask][None, :]).sum(axis=1)
        return out / (len(self.nodes) * width * np.sqrt(2 * np.pi))

    def to_dict(self) -> dict:
        """The fields as JSON-serialisable lists (inverse of :meth:`from_dict`)."""
        return {f.name: (v.tolist() if isinstance(v := getattr(self, f.name), np.ndarray) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, fields: dict) -> "HessianSpectrum":
        return cls(**{k: (np.asarray(v, dtype=float) if isinstance(v, list) else v) for k, v in fields.items()})

    def summary(self) -> dict:
        return {"preconditioner": self.name, "lambda_max": float(self.largest[0]),
                "lambda_min": float(self.smallest[0]), "condition_number": self.condition_number,
                "negative_mass": self.negative_mass, "n_hessp": self.n_hessp}


def hessian_spectrum(objective, x, sqrt_preconditioner: SqrtPreconditioner | None = None, name: str = "none",
                     k: int = 6, extreme_steps: int = 80, probes: int = 4, steps: int = 40,
                     seed: int = 0) -> HessianSpectrum:
    """Extreme eigenvalues and spectral density of P^{1/2} H P^{1/2} at θ = x.

    H·v comes from :meth:`~mtpfit.objective.Objective.hessp` (a forward difference of the analytic gradient,
    relative error ≈ 1e-8; one loss+gradient pass per product).

    Parameters
    ----------
    objective : Objective
    x : ndarray, shape (P,)
    sqrt_preconditioner : callable, optional
        v ↦ P^{1/2} v; ``None`` for the plain Hessian.
    name : str
        Label of the preconditioner.
    k : int
        Extreme eigenvalues reported at each end.
    extreme_steps : int
        Lanczos steps (with full re-orthogonalisation) for the extreme eigenvalues: the Ritz values at both ends
        converge first (Kaniel–Paige theory), the outermost to a few digits well within 80 steps here; a
        bounded cost, unlike restarted ARPACK, which stalls on the cluster of near-zero eigenvalues that
        the MTP's exact symmetries create.
    probes, steps : int
        Stochastic Lanczos quadrature: Rademacher probes and Lanczos steps per probe.
    seed : int
        Seeds the probes and eigsh's start vector.

    Returns
    -------
    HessianSpectrum
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    apply_root = sqrt_preconditioner or (lambda v: v)
    count = {"n": 0}

    def matvec(v):
        count["n"] += 1
        v = np.asarray(v, dtype=float).ravel()
        return apply_root(objective.hessp(x, apply_root(v)))

    rng = np.random.default_rng(seed)
    ritz = np.sort(lanczos(matvec, rng.normal(size=n), extreme_steps)[0])
    k = min(k, len(ritz))
    largest, smallest = ritz[::-1][:k], ritz[:k]
    nodes, weights = [], []
    for _ in range(probes):
        t, w = lanczos(matvec, rng.choice([-1.0, 1.0], size=n), steps)
        nodes.append(np.pad(t, (0, steps - len(t))))
        weights.append(np.pad(w, (0, steps - len(w))))
    return HessianSpectrum(name, largest, smallest, np.array(nodes), np.array(weights), count["n"])


def find_state(state, keys: set[str]) -> list[dict]:
    """Every sub-dict of a (nested) optimizer state that holds all of ``keys``, depth first."""
    found = []
    if isinstance(state, dict):
        if keys <= set(state):
            found.append(state)
        for value in state.values():
            found.extend(find_state(value, keys))
    return found


def adam_preconditioner(state, b2: float = 0.999, eps: float = 1e-8) -> SqrtPreconditioner:
    """P^{1/2} of Adam, RAdam, AdamW, LAMB (before its trust ratio): P = diag(1/(√v̂ + ε)), v̂ = v/(1 − β₂ᵗ), from
    the first second-moment statistic found in ``state``. RAdam's rectification only scales P."""
    found = find_state(state, {"count", "m", "v"})
    if not found:
        raise ValueError("no Adam second moment (count, m, v) in this optimizer state")
    s = found[0]
    v_hat = np.asarray(s["v"]) / (1.0 - b2 ** max(int(s["count"]), 1))
    root = 1.0 / np.sqrt(np.sqrt(v_hat) + eps)
    return lambda v: root * v


def soap_preconditioner(state, eps: float = 1e-8) -> SqrtPreconditioner:
    """P^{1/2} of SOAP (Vyas et al. 2024): per preconditioned matrix G, P G = Q_L ((Q_Lᵀ G Q_R) / (√V + ε)) Q_Rᵀ,
    so P^{1/2} scales by (√V + ε)^{-1/2} in the rotated basis. Parameters outside SOAP's matrices keep P = I."""
    blocks = find_state(state, {"layout", "QL", "QR", "V"})
    if not blocks:
        raise ValueError("no SOAP statistics (layout, QL, QR, V) in this optimizer state")

    def apply(v):
        out = v.copy()
        for b in blocks:
            start, count, rows, cols = (int(t) for t in b["layout"])
            size = count * rows * cols
            G = v[start:start + size].reshape(count, rows, cols)
            QL, QR = np.asarray(b["QL"]), np.asarray(b["QR"])
            scale = 1.0 / np.sqrt(np.sqrt(np.asarray(b["V"])) + eps)
            rotated = np.einsum("kji,kjl,klm->kim", QL, G, QR) * scale
            out[start:start + size] = np.einsum("kij,kjl,kml->kim", QL, rotated, QR).ravel()
        return out

    return apply


def dense_preconditioner(P: np.ndarray) -> SqrtPreconditioner:
    """P^{1/2} of a dense symmetric positive semi-definite P (e.g. BFGS's inverse-Hessian approximation, scipy's
    ``hess_inv``); negative round-off eigenvalues are clipped to 0."""
    values, vectors = scipy.linalg.eigh(0.5 * (P + P.T))
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    return lambda v: root @ (vectors.T @ v)
