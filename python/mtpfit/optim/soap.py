"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al. 2024, "SOAP: Improving and
Stabilizing Shampoo using Adam"), and the SOAP–Muon hybrid (Harari et al. 2026, "Beyond Adam")."""
from __future__ import annotations

import numpy as np

from .base import Transform
from .muon import newton_schulz

__all__ = ["soap"]


def _eigenbasis(P: np.ndarray) -> np.ndarray:
    """Eigenvectors of a statistic, by decreasing eigenvalue."""
    _, Q = np.linalg.eigh(P + 1e-30 * np.eye(len(P)))
    return Q[:, ::-1].copy()


def _refresh(P: np.ndarray, Q: np.ndarray, V: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """One power iteration and QR towards the eigenbasis of P; the columns are first put in order of the
    current eigenvalue estimates diag(QᵀPQ), and the second moment V is permuted with them."""
    order = np.argsort(-np.einsum("ij,ij->j", Q, P @ Q), kind="stable")
    Q, _ = np.linalg.qr(P @ Q[:, order])
    return Q, np.take(V, order, axis=axis)


def _matrices(blocks, n):
    """(start, count, rows, cols) of every matrix SOAP preconditions: the matrix blocks, and every other block
    as one 1 × n row (a full n × n preconditioner, affordable at MTP sizes)."""
    layout = []
    for name, s in blocks.slices.items():
        if name in blocks.matrices:
            layout.append((s.start, *blocks.matrices[name]))
        elif s.stop > s.start:
            layout.append((s.start, 1, 1, s.stop - s.start))
    return layout


def soap(lr: float = 3e-3, b1: float = 0.95, b2: float = 0.95, eps: float = 1e-8, weight_decay: float = 0.01,
         shampoo_beta: float | None = None, precondition_frequency: int = 10, orthogonalise: bool = False) -> Transform:
    """The SOAP step, learning rate and weight decay included.

    For each matrix G (rows × cols; vector blocks as 1 × n) with Shampoo statistics
    L ← β_s L + (1−β_s) GGᵀ, R ← β_s R + (1−β_s) GᵀG and their eigenbases Q_L, Q_R:
    M ← β₁M + (1−β₁)G; rotate G̃ = Q_Lᵀ G Q_R, M̃ = Q_Lᵀ M Q_R; V ← β₂V + (1−β₂)G̃²;
    N = Q_L (M̃ / (√V + ε)) Q_Rᵀ; θ ← θ − η·√(1−β₂ᵗ)/(1−β₁ᵗ)·N, then θ ← θ − ηλθ.
    The first call only initialises L, R and the eigenbases (from ``eigh``); after each step the statistics
    are updated and, every ``precondition_frequency`` steps, the bases refreshed by one power iteration and
    QR, the second moment permuted to the new order (M is kept unrotated, i.e. re-rotated on every use).
    β_s defaults to β₂.

    With ``orthogonalise`` (SOAP–Muon, Harari et al. 2026) N is replaced by its Newton–Schulz
    orthogonalisation divided by its RMS, and the step is η·that (no bias-correction factor).
    """
    beta_s = b2 if shampoo_beta is None else shampoo_beta

    def init(params, blocks):
        state = {"count": 0}
        for j, (start, count, rows, cols) in enumerate(_matrices(blocks, len(params))):
            state[str(j)] = {"layout": np.array([start, count, rows, cols], dtype=np.int64),
                             "L": np.zeros((count, rows, rows)), "R": np.zeros((count, cols, cols)),
                             "QL": np.zeros((count, rows, rows)), "QR": np.zeros((count, cols, cols)),
                             "M": np.zeros((count, rows, cols)), "V": np.zeros((count, rows, cols))}
        return state

    def update(g, state, params):
        t = state["count"]
        new_state = {"count": t + 1}
        out = np.zeros_like(g)
        for key, block in state.items():
            if key == "count":
                continue
            start, count, rows, cols = (int(v) for v in block["layout"])
            G = g[start:start + count * rows * cols].reshape(count, rows, cols)
            P = params[start:start + count * rows * cols].reshape(count, rows, cols)
            L = beta_s * block["L"] + (1 - beta_s) * G @ G.transpose(0, 2, 1)
            R = beta_s * block["R"] + (1 - beta_s) * G.transpose(0, 2, 1) @ G
            QL, QR, M, V = block["QL"].copy(), block["QR"].copy(), block["M"].copy(), block["V"].copy()
            step = np.zeros_like(G)
            if t == 0:  # first call: statistics and eigenbases only
                for k in range(count):
                    QL[k], QR[k] = _eigenbasis(L[k]), _eigenbasis(R[k])
            else:
                M = b1 * M + (1 - b1) * G
                for k in range(count):
                    Gr = QL[k].T @ G[k] @ QR[k]
                    V[k] = b2 * V[k] + (1 - b2) * Gr * Gr
                    N = QL[k] @ ((QL[k].T @ M[k] @ QR[k]) / (np.sqrt(V[k]) + eps)) @ QR[k].T
                    if orthogonalise:
                        O = newton_schulz(N)
                        step[k] = lr * O / (np.sqrt(np.mean(O * O)) + 1e-12)
                    else:
                        step[k] = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * N
                    if t % precondition_frequency == 0:
                        QL[k], V[k] = _refresh(L[k], QL[k], V[k], axis=0)
                        QR[k], V[k] = _refresh(R[k], QR[k], V[k], axis=1)
                moved = P - step
                step = step + lr * weight_decay * moved
            out[start:start + count * rows * cols] = -step.ravel()
            new_state[key] = {"layout": block["layout"], "L": L, "R": R, "QL": QL, "QR": QR, "M": M, "V": V}
        return out, new_state

    return Transform(init, update)
