"""Learning-rate schedules: step number (from 0) → learning rate. Closed forms of torch.optim.lr_scheduler's."""
from __future__ import annotations

import math
from typing import Callable

__all__ = ["Schedule", "constant", "step_decay", "exponential", "cosine", "linear_warmup", "warmup_cosine",
           "make_schedule"]

Schedule = Callable[[int], float]


def constant(lr: float) -> Schedule:
    """η_t = lr."""
    return lambda t: lr


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """η_t = lr · γ^⌊t / step_size⌋ (torch StepLR)."""
    return lambda t: lr * gamma ** (t // step_size)


def exponential(lr: float, gamma: float) -> Schedule:
    """η_t = lr · γ^t (torch ExponentialLR)."""
    return lambda t: lr * gamma ** t


def cosine(lr: float, t_max: int, lr_min: float = 0.0) -> Schedule:
    """η_t = lr_min + (lr − lr_min)(1 + cos(π t / T))/2 for t ≤ T, then lr_min (torch CosineAnnealingLR's
    closed form; Loshchilov & Hutter 2017)."""
    return lambda t: lr_min + (lr - lr_min) * (1 + math.cos(math.pi * min(t, t_max) / t_max)) / 2


def linear_warmup(lr: float, warmup: int, start_factor: float = 0.0) -> Schedule:
    """η_t = lr · (s + (1 − s) · min(t, W)/W) (torch LinearLR to factor 1)."""
    return lambda t: lr * (start_factor + (1 - start_factor) * min(t, warmup) / warmup)


def warmup_cosine(lr: float, warmup: int, total: int, lr_min: float = 0.0) -> Schedule:
    """Linear warm-up from 0 over ``warmup`` steps, then cosine decay to ``lr_min`` at ``total``."""
    decay = cosine(lr, max(1, total - warmup), lr_min)
    return lambda t: lr * (t + 1) / warmup if t < warmup else decay(t - warmup)


def make_schedule(lr: float, name: str = "constant", **options) -> Schedule:
    """A schedule by name: ``constant``, ``step`` (step_size, gamma), ``exponential`` (gamma), ``cosine``
    (t_max, lr_min), ``warmup`` (warmup, start_factor), ``warmup_cosine`` (warmup, total, lr_min).

    Raises
    ------
    ValueError
        For an unknown name.
    """
    makers = {"constant": constant, "step": step_decay, "exponential": exponential, "cosine": cosine,
              "warmup": linear_warmup, "warmup_cosine": warmup_cosine}
    if name not in makers:
        raise ValueError(f"unknown schedule {name!r}; choose from {sorted(makers)}")
    return makers[name](lr, **options)
