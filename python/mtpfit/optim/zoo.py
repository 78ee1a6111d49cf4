"""Every optimizer of the study by name.

Each factory returns an :class:`~mtpfit.optim.base.Optimizer`. Common keywords: ``lr`` (a number or a
schedule of the step), ``schedule`` (a name for :func:`~mtpfit.optim.schedules.make_schedule` with
``schedule_options``) and ``clip`` (gradient clipping by global norm, applied first).

Defaults are OPTIMIZERS.md's, except where they diverge on an MTP: the moment coefficients see gradients many
orders of magnitude larger than the radial ones, and θ starts tiny (MLIP defaults 1e-3). There the default is
the largest learning rate of a decade sweep (1e-1 … 1e-6, 5 epochs, batches of 16) that trains the level-10 MTP
on the bundled Mo set, and the plain-gradient methods clip at global norm 1.0 as the optimizer study did. Each
such docstring says so.
"""
from __future__ import annotations

from typing import Callable

from .base import Optimizer, Transform, chain
from .muon import scale_by_muon
from .schedules import make_schedule
from .soap import soap as soap_transform
from .transforms import (add_decayed_weights, clip_by_global_norm, ema, partition, scale_by_adam,
                         scale_by_learning_rate, scale_by_radam, scale_by_trust_ratio, trace)
from .wrappers import lookahead as lookahead_wrapper
from .wrappers import perturbed, schedule_free

__all__ = ["OPTIMIZERS", "make_optimizer", "sgd", "momentum", "nesterov", "adam", "adamw", "radam", "lamb",
           "lookahead", "ranger", "schedule_free_sgd", "schedule_free_adamw", "muon", "soap", "soap_muon"]


def _lr(lr, schedule: str | None, schedule_options: dict | None):
    return make_schedule(lr, schedule, **(schedule_options or {})) if schedule else lr


def _build(name: str, core: list[Transform], lr, clip: float | None, schedule, schedule_options,
           weight_decay: float = 0.0) -> Optimizer:
    parts = ([clip_by_global_norm(clip)] if clip else []) + core
    if weight_decay:
        parts.append(add_decayed_weights(weight_decay))
    parts.append(scale_by_learning_rate(_lr(lr, schedule, schedule_options)))
    return Optimizer(name, chain(*parts))


def sgd(lr: float = 3e-3, clip: float | None = 1.0, schedule: str | None = None,
        schedule_options: dict | None = None) -> Optimizer:
    """Plain gradient descent θ ← θ − ηg. MTP default: η = 3e-3 with clipping at 1.0 (unclipped SGD diverged
    at every η ≥ 1e-4 in the sweep)."""
    return _build("sgd", [], lr, clip, schedule, schedule_options)


def momentum(lr: float = 1e-2, beta: float = 0.9, clip: float | None = 1.0, schedule: str | None = None,
             schedule_options: dict | None = None) -> Optimizer:
    """The optimizer study's momentum: v ← βv + (1−β)g, θ ← θ − ηv (v₀ = 0). torch's SGD with
    ``momentum=β, dampening=β`` differs only at the first step, where its buffer is g. MTP default: η = 1e-2,
    clipping at 1.0."""
    return _build("momentum", [ema(beta)], lr, clip, schedule, schedule_options)


def nesterov(lr: float = 1e-3, momentum: float = 0.9, clip: float | None = 1.0, schedule: str | None = None,
             schedule_options: dict | None = None) -> Optimizer:
    """Nesterov momentum as torch.optim.SGD(nesterov=True): b ← μb + g, θ ← θ − η(g + μb)
    (Sutskever et al. 2013). MTP default: η = 1e-3, clipping at 1.0."""
    return _build("nesterov", [trace(momentum, nesterov=True)], lr, clip, schedule, schedule_options)


def adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, clip: float | None = None,
         schedule: str | None = None, schedule_options: dict | None = None) -> Optimizer:
    """Adam (Kingma & Ba 2015): θ ← θ − η m̂/(√v̂ + ε)."""
    return _build("adam", [scale_by_adam(b1, b2, eps)], lr, clip, schedule, schedule_options)


def adamw(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.01,
          clip: float | None = None, schedule: str | None = None, schedule_options: dict | None = None) -> Optimizer:
    """AdamW (Loshchilov & Hutter 2019): decoupled decay, θ ← θ − η(m̂/(√v̂ + ε) + λθ)."""
    return _build("adamw", [scale_by_adam(b1, b2, eps)], lr, clip, schedule, schedule_options, weight_decay)


def radam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
          clip: float | None = None, schedule: str | None = None, schedule_options: dict | None = None) -> Optimizer:
    """Rectified Adam (Liu et al. 2020), see :func:`~mtpfit.optim.transforms.scale_by_radam`; optional
    decoupled weight decay."""
    return _build("radam", [scale_by_radam(b1, b2, eps)], lr, clip, schedule, schedule_options, weight_decay)


def lamb(lr: float = 0.1, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6, weight_decay: float = 0.0,
         clip: float | None = None, schedule: str | None = None, schedule_options: dict | None = None) -> Optimizer:
    """LAMB (You et al. 2020) as optax: per block u = m̂/(√v̂ + ε) + λθ, θ ← θ − η(‖θ‖/‖u‖)u. MTP default:
    η = 0.1, chosen at level 08, where optax's 1e-3 left θ where it starts (the trust ratio is ‖θ‖ ≈ 1e-3 per
    block). At level 16 on Ag–Pd η = 0.1 diverges; 1e-3 stalls for a minute, then reaches the best LAMB errors
    within 120 s (benchmarks/RESULTS.md §15, campaign 6)."""
    parts = ([clip_by_global_norm(clip)] if clip else []) + [scale_by_adam(b1, b2, eps)]
    if weight_decay:
        parts.append(add_decayed_weights(weight_decay))
    parts += [scale_by_trust_ratio(), scale_by_learning_rate(_lr(lr, schedule, schedule_options))]
    return Optimizer("lamb", chain(*parts))


def lookahead(inner: str = "adam", sync_period: int = 5, slow_step: float = 0.5, **inner_options) -> Optimizer:
    """Lookahead (Zhang et al. 2019) around the named inner optimizer; see
    :func:`~mtpfit.optim.wrappers.lookahead`."""
    return lookahead_wrapper(make_optimizer(inner, **inner_options), sync_period, slow_step)


def ranger(lr: float = 1e-3, b1: float = 0.95, b2: float = 0.999, eps: float = 1e-5, sync_period: int = 6,
           slow_step: float = 0.5, clip: float | None = None, schedule: str | None = None,
           schedule_options: dict | None = None) -> Optimizer:
    """Ranger (Wright 2019): RAdam inside Lookahead (k = 6, α = 0.5), without gradient centralisation."""
    inner = radam(lr, b1, b2, eps, clip=clip, schedule=schedule, schedule_options=schedule_options)
    return lookahead_wrapper(inner, sync_period, slow_step, name="ranger")


def _clipped(optimizer: Optimizer, clip: float | None) -> Optimizer:
    if not clip:
        return optimizer
    return Optimizer(optimizer.name, chain(clip_by_global_norm(clip), optimizer.transform), optimizer.eval_params)


def schedule_free_sgd(lr: float = 1e-4, b1: float = 0.9, weight_decay: float = 0.0, warmup: int = 0,
                      clip: float | None = None) -> Optimizer:
    """Schedule-Free SGD (Defazio et al. 2024); see :func:`~mtpfit.optim.wrappers.schedule_free`. MTP default:
    η = 1e-4 (the authors' 1.0 and everything down to 1e-3 diverged)."""
    return _clipped(schedule_free(lr, b1, None, weight_decay=weight_decay, warmup=warmup, name="schedule_free_sgd"),
                    clip)


def schedule_free_adamw(lr: float = 2.5e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                        weight_decay: float = 0.0, warmup: int = 0, clip: float | None = None) -> Optimizer:
    """Schedule-Free AdamW (Defazio et al. 2024); see :func:`~mtpfit.optim.wrappers.schedule_free`."""
    return _clipped(schedule_free(lr, b1, b2, eps, weight_decay, warmup, name="schedule_free_adamw"), clip)


def muon(lr: float | None = None, beta: float = 0.95, nesterov: bool = True, reshape: str = "blocks",
         adam_lr: float = 3e-4, adam_b1: float = 0.9, adam_b2: float = 0.95, adam_eps: float = 1e-10,
         adam_weight_decay: float = 0.0, clip: float | None = None, schedule: str | None = None,
         schedule_options: dict | None = None) -> Optimizer:
    """Muon (Keller Jordan 2024): θ ← θ − η·NS(momentum)·√max(1, rows/cols); see
    :func:`~mtpfit.optim.muon.scale_by_muon` for the reshapes and what Muon does to a single row.
    With ``reshape="blocks"`` the species and moment coefficients (not matrices) take AdamW steps
    (``adam_*``, Keller Jordan's defaults); "pad_sqrt" and "factorization" apply Muon to the whole θ, as
    the optimizer study did.

    MTP defaults: η = 3e-3 for "blocks" and "factorization", 3e-4 for "pad_sqrt" (Keller Jordan's 0.02 is for
    unit-scale network weights; it diverged on every reshape here)."""
    if lr is None:
        lr = MUON_DEFAULT_LR[reshape]
    core = ([clip_by_global_norm(clip)] if clip else []) + [
        scale_by_muon(reshape, beta, nesterov), scale_by_learning_rate(_lr(lr, schedule, schedule_options))]
    if reshape != "blocks":
        return Optimizer(f"muon_{reshape}", chain(*core))
    rest = adamw(adam_lr, adam_b1, adam_b2, adam_eps, adam_weight_decay).transform
    return Optimizer("muon_blocks", partition({"matrix": chain(*core), "rest": rest},
                                              {"radial": "matrix", "species": "rest", "moment": "rest"}))


def soap(lr: float = 3e-3, b1: float = 0.95, b2: float = 0.95, eps: float = 1e-8, weight_decay: float = 0.01,
         precondition_frequency: int = 10, shampoo_beta: float | None = None, clip: float | None = None) -> Optimizer:
    """SOAP (Vyas et al. 2024); see :func:`~mtpfit.optim.soap.soap`."""
    parts = ([clip_by_global_norm(clip)] if clip else []) + [
        soap_transform(lr, b1, b2, eps, weight_decay, shampoo_beta, precondition_frequency)]
    return Optimizer("soap", chain(*parts))


def soap_muon(lr: float = 1e-3, b1: float = 0.95, b2: float = 0.95, eps: float = 1e-8, weight_decay: float = 0.01,
              precondition_frequency: int = 10, shampoo_beta: float | None = None,
              clip: float | None = None) -> Optimizer:
    """SOAP–Muon (Harari et al. 2026): SOAP's back-projected step, orthogonalised, rescaled to unit RMS."""
    parts = ([clip_by_global_norm(clip)] if clip else []) + [
        soap_transform(lr, b1, b2, eps, weight_decay, shampoo_beta, precondition_frequency, orthogonalise=True)]
    return Optimizer("soap_muon", chain(*parts))


#: MTP default learning rate of Muon per reshape (see :func:`muon`).
MUON_DEFAULT_LR = {"blocks": 3e-3, "factorization": 3e-3, "pad_sqrt": 3e-4}

#: Name → factory. Names are what ``mtpfit train --optimizer`` accepts.
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "sgd": sgd, "momentum": momentum, "nesterov": nesterov, "adam": adam, "adamw": adamw, "radam": radam,
    "lamb": lamb, "lookahead": lookahead, "ranger": ranger, "schedule_free_sgd": schedule_free_sgd,
    "schedule_free_adamw": schedule_free_adamw, "muon": muon,
    "muon_pad_sqrt": lambda **kw: muon(reshape="pad_sqrt", **kw),
    "muon_factorization": lambda **kw: muon(reshape="factorization", **kw),
    "soap": soap, "soap_muon": soap_muon,
}


def make_optimizer(name: str, perturb_sigma: float | None = None, perturb_every: int = 100, perturb_seed: int = 0,
                   **hyperparameters) -> Optimizer:
    """The optimizer called ``name`` (case-insensitive; '-' and '_' alike) with the given hyperparameters;
    with ``perturb_sigma``, wrapped in :func:`~mtpfit.optim.wrappers.perturbed` (noise every ``perturb_every``
    steps).

    Raises
    ------
    ValueError
        For an unknown name (listing the known ones) or an unknown hyperparameter.
    """
    key = name.lower().replace("-", "_")
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}")
    try:
        optimizer = OPTIMIZERS[key](**hyperparameters)
    except TypeError as err:
        raise ValueError(f"optimizer {name!r}: {err}") from None
    return perturbed(optimizer, perturb_sigma, perturb_every, perturb_seed) if perturb_sigma else optimizer
