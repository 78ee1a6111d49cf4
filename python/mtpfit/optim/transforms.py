"""First-order gradient transformations (each one small; optimizers are chains of them)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .base import Transform
from .schedules import Schedule, constant

__all__ = ["scale_by_learning_rate", "clip_by_global_norm", "add_decayed_weights", "trace", "ema",
           "scale_by_adam", "scale_by_radam", "scale_by_trust_ratio", "partition"]


def _stateless(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Transform:
    return Transform(lambda params, blocks: {}, lambda u, state, params: (fn(u, params), state))


def scale_by_learning_rate(lr: float | Schedule) -> Transform:
    """u ← −η_t u, with η_t a constant or a schedule of the step t (from 0)."""
    schedule = lr if callable(lr) else constant(lr)

    def update(u, state, params):
        return -schedule(state["count"]) * u, {"count": state["count"] + 1}

    return Transform(lambda params, blocks: {"count": 0}, update)


def clip_by_global_norm(max_norm: float) -> Transform:
    """u ← u · min(1, c/‖u‖) with ‖·‖ the norm of the whole vector (torch ``clip_grad_norm_``: the factor is
    c/(‖u‖ + 1e-6), applied when below 1)."""

    def clip(u, params):
        norm = float(np.linalg.norm(u))
        factor = max_norm / (norm + 1e-6)
        return u * factor if factor < 1.0 else u

    return _stateless(clip)


def add_decayed_weights(weight_decay: float) -> Transform:
    """u ← u + λθ. Placed before the learning-rate scaling it gives decoupled decay θ ← θ − ηλθ − η·step
    (AdamW, Loshchilov & Hutter 2019); before the Adam scaling, the coupled L2 penalty."""
    return _stateless(lambda u, params: u + weight_decay * params)


def trace(momentum: float, nesterov: bool = False) -> Transform:
    """Heavy-ball momentum as torch.optim.SGD: b ← μb + u (b₀ = 0); output b, or u + μb with Nesterov
    (Sutskever et al. 2013)."""

    def update(u, state, params):
        b = momentum * state["b"] + u
        return (u + momentum * b if nesterov else b), {"b": b}

    return Transform(lambda params, blocks: {"b": np.zeros_like(params)}, update)


def ema(beta: float) -> Transform:
    """The optimizer study's momentum: v ← βv + (1 − β)u (v₀ = 0), output v."""

    def update(u, state, params):
        v = beta * state["v"] + (1.0 - beta) * u
        return v, {"v": v}

    return Transform(lambda params, blocks: {"v": np.zeros_like(params)}, update)


def _adam_moments(u, state, b1, b2):
    t = state["count"] + 1
    m = b1 * state["m"] + (1.0 - b1) * u
    v = b2 * state["v"] + (1.0 - b2) * u * u
    return t, m, v, {"count": t, "m": m, "v": v}


def _zero_moments(params, blocks):
    return {"count": 0, "m": np.zeros_like(params), "v": np.zeros_like(params)}


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Transform:
    """u ← m̂/(√v̂ + ε) with bias-corrected first and second moments (Adam; Kingma & Ba 2015)."""

    def update(u, state, params):
        t, m, v, new = _adam_moments(u, state, b1, b2)
        return (m / (1.0 - b1 ** t)) / (np.sqrt(v / (1.0 - b2 ** t)) + eps), new

    return Transform(_zero_moments, update)


def scale_by_radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, threshold: float = 5.0) -> Transform:
    """Rectified Adam (Liu et al. 2020), as torch.optim.RAdam: ρ∞ = 2/(1−β₂) − 1,
    ρ_t = ρ∞ − 2tβ₂ᵗ/(1−β₂ᵗ); if ρ_t > 5, u ← r_t · m̂ · √(1−β₂ᵗ)/(√v + ε) with
    r_t = √((ρ_t−4)(ρ_t−2)ρ∞ / ((ρ∞−4)(ρ∞−2)ρ_t)); otherwise u ← m̂ (an un-normalised momentum step)."""
    rho_inf = 2.0 / (1.0 - b2) - 1.0

    def update(u, state, params):
        t, m, v, new = _adam_moments(u, state, b1, b2)
        m_hat = m / (1.0 - b1 ** t)
        rho = rho_inf - 2.0 * t * b2 ** t / (1.0 - b2 ** t)
        if rho <= threshold:
            return m_hat, new
        rect = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        return rect * m_hat * np.sqrt(1.0 - b2 ** t) / (np.sqrt(v) + eps), new

    return Transform(_zero_moments, update)


def scale_by_trust_ratio() -> Transform:
    """Per block: u ← (‖θ‖/‖u‖) u, the ratio 1 when either norm is 0 (LAMB; You et al. 2020)."""

    def init(params, blocks):
        return {"slices": np.array([(s.start, s.stop) for s in blocks.slices.values()], dtype=np.int64)}

    def update(u, state, params):
        out = u.copy()
        for start, stop in state["slices"]:
            p_norm, u_norm = np.linalg.norm(params[start:stop]), np.linalg.norm(u[start:stop])
            if p_norm > 0 and u_norm > 0:
                out[start:stop] *= p_norm / u_norm
        return out, state

    return Transform(init, update)


def partition(transforms: dict[str, Transform], labels: dict[str, str]) -> Transform:
    """Different transforms for different blocks: ``labels`` maps each block name to a key of ``transforms``.
    Each transform sees the whole vector but only its blocks' part of its output is kept."""

    def masks(blocks):
        out = {}
        for key in transforms:
            mask = np.zeros(blocks.size, bool)
            for name, s in blocks.slices.items():
                if labels.get(name) == key:
                    mask[s] = True
            out[key] = mask
        return out

    def init(params, blocks):
        return {"masks": masks(blocks), **{k: t.init(params, blocks) for k, t in transforms.items()}}

    def update(u, state, params):
        out = np.zeros_like(u)
        new = {"masks": state["masks"]}
        for key, t in transforms.items():
            mask = state["masks"][key]
            result, new[key] = t.update(np.where(mask, u, 0.0), state[key], params)
            out[mask] = result[mask]
        return out, new

    return Transform(init, update)
