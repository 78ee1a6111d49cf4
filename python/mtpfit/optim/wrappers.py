"""Optimizers that change where θ is evaluated: Lookahead and Schedule-Free."""
from __future__ import annotations

import numpy as np

from .base import Optimizer, Transform

__all__ = ["lookahead", "schedule_free", "perturbed"]


def lookahead(inner: Optimizer, sync_period: int = 5, slow_step: float = 0.5, name: str | None = None) -> Optimizer:
    """Lookahead (Zhang et al. 2019): the inner optimizer moves fast weights; every k steps
    slow ← slow + α(fast − slow) and fast ← slow. θ is reported at the slow weights."""

    def init(params, blocks):
        return {"inner": inner.init(params, blocks), "slow": params.copy(), "count": 0}

    def update(g, state, params):
        fast, inner_state = inner.step(g, state["inner"], params)
        count = state["count"] + 1
        slow = state["slow"]
        if count % sync_period == 0:
            slow = slow + slow_step * (fast - slow)
            fast = slow
        return fast - params, {"inner": inner_state, "slow": slow, "count": count}

    return Optimizer(name or f"lookahead({inner.name})", Transform(init, update),
                     eval_params=lambda state, params: state["slow"])


def schedule_free(lr: float, b1: float = 0.9, b2: float | None = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                  warmup: int = 0, name: str | None = None) -> Optimizer:
    """Schedule-Free SGD (``b2=None``) or AdamW (Defazio et al. 2024, "The Road Less Scheduled").

    Three sequences: z (base), x (the weighted average; evaluate, checkpoint and report there), and
    y = (1−β₁)z + β₁x where the gradient is taken (θ of the optimizer is y). Step k (from 0):
    γ_k = η·min(1, (k+1)/warmup); w_k = (max_{j≤k} γ_j)²; c = w_k/Σ_{j≤k} w_j;
    z ← z − γ_k d with d = g + λy (SGD) or d = g/(√(v/(1−β₂^{k+1})) + ε) + λy, v ← β₂v + (1−β₂)g² (AdamW);
    x ← (1−c)x + c z.
    """

    def init(params, blocks):
        state = {"z": params.copy(), "x": params.copy(), "count": 0, "lr_max": 0.0, "weight_sum": 0.0}
        if b2 is not None:
            state["v"] = np.zeros_like(params)
        return state

    def update(g, state, params):
        k = state["count"]
        gamma = lr * min(1.0, (k + 1) / warmup) if warmup else lr
        lr_max = max(state["lr_max"], gamma)
        weight = lr_max ** 2
        weight_sum = state["weight_sum"] + weight
        c = weight / weight_sum
        new = {"count": k + 1, "lr_max": lr_max, "weight_sum": weight_sum}
        if b2 is None:
            d = g + weight_decay * params
        else:
            v = b2 * state["v"] + (1 - b2) * g * g
            d = g / (np.sqrt(v / (1 - b2 ** (k + 1))) + eps) + weight_decay * params
            new["v"] = v
        z = state["z"] - gamma * d
        x = (1 - c) * state["x"] + c * z
        new.update(z=z, x=x)
        y = (1 - b1) * z + b1 * x
        return y - params, new

    kind = "sgd" if b2 is None else "adamw"
    return Optimizer(name or f"schedule_free_{kind}", Transform(init, update),
                     eval_params=lambda state, params: state["x"])


def perturbed(inner: Optimizer, sigma: float, every: int, seed: int = 0) -> Optimizer:
    """Periodic parameter perturbation (the optimizer study's noise injection): after every ``every``-th step of
    ``inner``, θ ← θ + N(0, σ²) independently per coefficient. The noise of step k is drawn from
    ``default_rng((seed, k))``, so runs are reproducible and resume exactly."""

    def init(params, blocks):
        return {"inner": inner.init(params, blocks), "count": 0}

    def update(g, state, params):
        new_params, inner_state = inner.step(g, state["inner"], params)
        count = state["count"] + 1
        if count % every == 0:
            new_params = new_params + np.random.default_rng((seed, count)).normal(0.0, sigma, params.shape)
        return new_params - params, {"inner": inner_state, "count": count}

    return Optimizer(f"{inner.name}+noise", Transform(init, update), inner.eval_params)
