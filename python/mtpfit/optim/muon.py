"""Muon: momentum orthogonalised by a Newton–Schulz iteration (Keller Jordan et al. 2024), with the optimizer
study's ways of seeing the flat θ as matrices."""
from __future__ import annotations

import math

import numpy as np

from .base import Transform

__all__ = ["newton_schulz", "matrix_shape", "scale_by_muon", "MUON_RESHAPES"]

#: How θ (or a block) is seen as a matrix: "pad_sqrt" and "factorization" reshape the whole vector (the
#: study's variants); "blocks" uses each species pair's K × R radial-coefficient matrix.
MUON_RESHAPES = ("pad_sqrt", "factorization", "blocks")

_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(G: np.ndarray, steps: int = 5, eps: float = 1e-7) -> np.ndarray:
    """Approximate orthogonalisation U Vᵀ of G = U Σ Vᵀ by the quintic Newton–Schulz iteration.

    X ← G/(‖G‖_F + ε); on the wide orientation, ``steps`` times: A = XXᵀ, X ← aX + (bA + cA²)X with
    (a, b, c) = (3.4445, −4.7750, 2.0315) (Keller Jordan, "Muon", 2024; OPTIMIZERS.md). The singular values
    land near, not at, 1 (≈ 0.7–1.2): that is the method, not an error.
    """
    a, b, c = _NS_COEFFICIENTS
    X = G / (np.linalg.norm(G) + eps)
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


def matrix_shape(n: int, reshape: str) -> tuple[int, int]:
    """Rows × cols for a vector of length n: "pad_sqrt" m = round(√n), cols = ⌈n/m⌉ (zero padding);
    "factorization" m = the largest divisor of n not above √n, cols = n/m (1 × n for prime n)."""
    if reshape == "pad_sqrt":
        rows = max(1, round(math.sqrt(n)))
        return rows, math.ceil(n / rows)
    if reshape == "factorization":
        rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
        return rows, n // rows
    raise ValueError(f"unknown reshape {reshape!r}")


def _orthogonalised(u: np.ndarray, shape: tuple[int, int], steps: int) -> np.ndarray:
    rows, cols = shape
    padded = np.zeros(rows * cols)
    padded[: len(u)] = u
    O = newton_schulz(padded.reshape(rows, cols), steps) * math.sqrt(max(1.0, rows / cols))
    return O.ravel()[: len(u)]


def scale_by_muon(reshape: str = "blocks", beta: float = 0.95, nesterov: bool = True, steps: int = 5) -> Transform:
    """Muon's direction (without the learning rate): m ← βm + (1−β)g; u = (1−β)g + βm with Nesterov (else m);
    each matrix of u orthogonalised by :func:`newton_schulz` and scaled by √max(1, rows/cols).

    With ``reshape="blocks"`` only the matrix blocks (``ParameterBlocks.matrices``, the radial coefficients)
    are orthogonalised and the rest of the output is zero (combine with Adam for those blocks; see
    :func:`mtpfit.optim.zoo.muon`). With "pad_sqrt" or "factorization" the whole θ is one matrix.

    Notes
    -----
    A single row (1 × n) has one singular value, so Muon returns ≈ 0.7·u/‖u‖ — normalised momentum and
    nothing more. Reshaping a vector changes the update's RMS several-fold with the shape, so the learning
    rate must be retuned per reshape (OPTIMIZERS.md).
    """
    if reshape not in MUON_RESHAPES:
        raise ValueError(f"unknown Muon reshape {reshape!r}; choose from {MUON_RESHAPES}")

    def init(params, blocks):
        if reshape == "blocks":
            if not blocks.matrices:
                raise ValueError("Muon with reshape='blocks' needs matrix blocks (ParameterBlocks.matrices)")
            layout = np.array([(blocks.slices[name].start, *shape) for name, shape in blocks.matrices.items()],
                              dtype=np.int64)
        else:
            layout = np.array([(0, 1, *matrix_shape(len(params), reshape))], dtype=np.int64)
        return {"m": np.zeros_like(params), "layout": layout}

    def update(g, state, params):
        m = beta * state["m"] + (1.0 - beta) * g
        u = (1.0 - beta) * g + beta * m if nesterov else m
        out = np.zeros_like(u)
        for start, count, rows, cols in state["layout"]:
            size = rows * cols
            for k in range(count):
                lo = start + k * size
                if reshape == "blocks":
                    out[lo:lo + size] = _orthogonalised(u[lo:lo + size], (rows, cols), steps)
                else:
                    out[:] = _orthogonalised(u, (rows, cols), steps)
        return out, {"m": m, "layout": state["layout"]}

    return Transform(init, update)
