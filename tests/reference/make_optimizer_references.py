#!/usr/bin/env python
"""Generate independent reference trajectories for mtpfit's optimizer unit tests.

What it computes
----------------
A small fixed test problem (float64 everywhere) and, for every optimizer
configuration listed in ``CASES`` below, the parameter vector after each of the
first ``N_STEPS`` = 6 steps, as produced by *third-party* implementations
(torch.optim, optax, schedulefree, Keller Jordan's muon-optimizer,
pytorch_optimizer, torch-optimizer / pytorch-ranger).  mtpfit itself is never
imported: these numbers are meant to check mtpfit's own optimizers.

Test problem (see also ``problem`` in the JSON)::

    rng    = numpy.random.default_rng(2026)
    G      = rng.normal(size=(14, 14))
    A      = G @ G.T / 14 + 0.5 * I
    b      = rng.normal(size=14)
    theta0 = rng.normal(size=14) * 0.5            # drawn in exactly this order
    f(θ)   = ½ θᵀAθ − bᵀθ + 0.05 Σ θ_i⁴           ∇f = Aθ − b + 0.2 θ³

θ is split into three parameter tensors (three leaves / three torch tensors):
``radial`` = θ[0:8] as a row-major 2×4 matrix, ``species`` = θ[8:9],
``moment`` = θ[9:14].  Every trajectory is stored flat (14 values per step) in
that order.  The gradient is always evaluated at the point the library itself
requires (the "fast" weights for Lookahead, y for Schedule-Free in train mode).

Output: ``tests/data/optim/optimizer_references.json``; see
``tests/data/optim/README.md`` for a description of every case and of the
conventions of each library (where they differ from ../shared/OPTIMIZERS.md, relative to the repo root).

Library versions it was last run with
-------------------------------------
Python 3.11.7, numpy 2.4.6, torch 2.13.0+cpu, jax 0.10.2, jaxlib 0.10.2,
optax 0.2.8, schedulefree 1.4.1, muon-optimizer 0.1.0 (Keller Jordan),
pytorch_optimizer 4.1.0, torch-optimizer 0.3.0, pytorch-ranger 0.1.1.
The versions actually used are also written to the JSON ("versions").

How to rerun
------------
None of these packages is a dependency of mtpfit or of its tests (the tests only
read the JSON).  Use a throw-away virtual environment::

    python -m venv /tmp/optref-venv && . /tmp/optref-venv/bin/activate
    pip install numpy==2.4.6 torch==2.13.0 jax==0.10.2 jaxlib==0.10.2 optax==0.2.8 \
        schedulefree==1.4.1
    pip install --no-deps muon-optimizer==0.1.0 pytorch_optimizer==4.1.0 \
        torch-optimizer==0.3.0 pytorch-ranger==0.1.1
    python tests/reference/make_optimizer_references.py      # from the repo root

(``--no-deps`` only keeps pip from touching the pinned torch; the four packages
need nothing beyond torch/numpy.)  ``--output PATH`` writes elsewhere.  The
script prints a few internal consistency checks (analytic vs automatic
gradient, agreement between independent libraries that implement the same
definition) and fails if one of them does not hold.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

N_STEPS = 6
BLOCKS = {"radial": (0, 8, (2, 4)), "species": (8, 9, (1,)), "moment": (9, 14, (5,))}
BLOCK_ORDER = ("radial", "species", "moment")

# --------------------------------------------------------------------------
# the test problem
# --------------------------------------------------------------------------


def make_problem():
    rng = np.random.default_rng(2026)
    G = rng.normal(size=(14, 14))
    A = G @ G.T / 14 + 0.5 * np.eye(14)
    b = rng.normal(size=14)
    theta0 = rng.normal(size=14) * 0.5
    return A, b, theta0


A_NP, B_NP, THETA0_NP = make_problem()


def loss_np(theta):
    return 0.5 * theta @ A_NP @ theta - B_NP @ theta + 0.05 * np.sum(theta**4)


def grad_np(theta):
    return A_NP @ theta - B_NP + 0.2 * theta**3


def as_list(x):
    return [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


# --------------------------------------------------------------------------
# torch side
# --------------------------------------------------------------------------
import torch  # noqa: E402

torch.set_default_dtype(torch.float64)
A_T = torch.tensor(A_NP, dtype=torch.float64)
B_T = torch.tensor(B_NP, dtype=torch.float64)


def torch_blocks(theta=THETA0_NP, trainable=BLOCK_ORDER):
    """The three blocks as float64 tensors; `trainable` ones are nn.Parameters."""
    out = []
    for name in BLOCK_ORDER:
        lo, hi, shape = BLOCKS[name]
        t = torch.tensor(np.array(theta[lo:hi]).reshape(shape), dtype=torch.float64)
        out.append(torch.nn.Parameter(t) if name in trainable else t)
    return out


def torch_flat(blocks):
    return torch.cat([p.detach().reshape(-1) for p in blocks])


def torch_loss(blocks):
    th = torch.cat([p.reshape(-1) for p in blocks])
    return 0.5 * th @ A_T @ th - B_T @ th + 0.05 * torch.sum(th**4)


def torch_set_grads(blocks):
    """Zero the gradients and back-propagate f at the current tensors."""
    for p in blocks:
        if isinstance(p, torch.nn.Parameter):
            p.grad = None
    loss = torch_loss(blocks)
    loss.backward()
    return float(loss.detach())


def run_torch(make, steps=N_STEPS, trainable=BLOCK_ORDER, before_step=None,
              after_step=None, extra=None):
    """Generic loop: grad at the current tensors, optional hook, opt.step()."""
    blocks = torch_blocks(trainable=trainable)
    params = [p for p in blocks if isinstance(p, torch.nn.Parameter)]
    opt = make(params)
    rec = {"theta": []}
    for t in range(steps):
        torch_set_grads(blocks)
        if before_step is not None:
            before_step(opt, params, rec, t)
        opt.step()
        if after_step is not None:
            after_step(opt, params, rec, t)
        rec["theta"].append(as_list(torch_flat(blocks).numpy()))
    return rec


def full_flat_from_parts(parts):
    """Concatenate per-block arrays (in BLOCK_ORDER) into the flat 14-vector."""
    return np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in parts])


# --------------------------------------------------------------------------
# jax / optax side
# --------------------------------------------------------------------------
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
import optax.contrib  # noqa: E402

A_J = jnp.asarray(A_NP)
B_J = jnp.asarray(B_NP)


def jax_params(theta=THETA0_NP, names=BLOCK_ORDER):
    return {n: jnp.asarray(np.array(theta[BLOCKS[n][0]:BLOCKS[n][1]]).reshape(BLOCKS[n][2]))
            for n in names}


def jax_flat(params, frozen=None):
    parts = []
    for n in BLOCK_ORDER:
        v = params[n] if n in params else frozen[n]
        parts.append(jnp.reshape(v, (-1,)))
    return jnp.concatenate(parts)


def make_jax_loss(frozen=None):
    def loss(params):
        th = jax_flat(params, frozen)
        return 0.5 * th @ A_J @ th - B_J @ th + 0.05 * jnp.sum(th**4)
    return loss


def run_optax(tx, names=BLOCK_ORDER, steps=N_STEPS, extra_record=None):
    """Standard optax loop; blocks not in `names` are held fixed at theta0."""
    frozen = jax_params() if len(names) < len(BLOCK_ORDER) else None
    loss = make_jax_loss(frozen)
    grad = jax.grad(loss)
    params = jax_params(names=names)
    state = tx.init(params)
    rec = {"theta": []}
    for t in range(steps):
        g = grad(params)
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        rec["theta"].append(as_list(jax_flat(params, frozen)))
        if extra_record is not None:
            extra_record(params, state, rec, frozen)
    return rec


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------
CASES = {}


def case(name, library, call, notes):
    def deco(fn):
        CASES[name] = dict(library=library, call=call, notes=notes, fn=fn)
        return fn
    return deco


# ---- torch.optim: SGD family ------------------------------------------------
@case("torch_sgd", "torch", "torch.optim.SGD(params, lr=0.1)",
      "Plain gradient descent θ ← θ − ηg.")
def _():
    return run_torch(lambda p: torch.optim.SGD(p, lr=0.1))


@case("torch_sgd_momentum", "torch", "torch.optim.SGD(params, lr=0.1, momentum=0.9)",
      "Heavy ball, torch form: v ← μv + g (v₁ = g₁), θ ← θ − ηv.")
def _():
    return run_torch(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))


@case("torch_sgd_nesterov", "torch",
      "torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)",
      "torch Nesterov: v ← μv + g (v₁ = g₁), θ ← θ − η(g + μv).")
def _():
    return run_torch(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True))


@case("torch_momentum_ema", "torch",
      "torch.optim.SGD(params, lr=0.1, momentum=0.9, dampening=0.9)",
      "v ← 0.9v + 0.1g for t ≥ 2, BUT torch initialises the buffer with the undamped "
      "gradient at the first step (v₁ = g₁, not 0.1·g₁), so this is NOT exactly the "
      "study's EMA momentum (v₀ = 0); see optax_momentum_ema / torch_momentum_ema_lr_scaled "
      "for the exact EMA form. θ ← θ − ηv.")
def _():
    return run_torch(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.9))


@case("torch_momentum_ema_lr_scaled", "torch",
      "torch.optim.SGD(params, lr=0.1 * (1 - 0.9), momentum=0.9)",
      "The study's EMA momentum v ← βv + (1−β)g (v₀ = 0), θ ← θ − ηv with η = 0.1, β = 0.9, "
      "obtained from torch's undamped heavy ball with lr η(1−β) = 0.01 (identical "
      "trajectory in exact arithmetic, since v_torch = v_ema/(1−β)).")
def _():
    return run_torch(lambda p: torch.optim.SGD(p, lr=0.1 * (1 - 0.9), momentum=0.9))


# ---- torch.optim: Adam family -----------------------------------------------
@case("torch_adam", "torch", "torch.optim.Adam(params, lr=0.01)",
      "betas (0.9, 0.999), eps 1e-8 added to sqrt(v̂) (bias-corrected second moment).")
def _():
    return run_torch(lambda p: torch.optim.Adam(p, lr=0.01))


@case("torch_adam_l2", "torch", "torch.optim.Adam(params, lr=0.01, weight_decay=0.1)",
      "Coupled L2: g ← g + λθ before the moments.")
def _():
    return run_torch(lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1))


@case("torch_adamw", "torch", "torch.optim.AdamW(params, lr=0.01, weight_decay=0.1)",
      "Decoupled: θ ← θ(1 − ηλ) before the Adam step.")
def _():
    return run_torch(lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1))


@case("torch_radam", "torch", "torch.optim.RAdam(params, lr=0.01)",
      "betas (0.9, 0.999), eps 1e-8. Rectified branch iff ρ_t > 5 (here first at t = 6; "
      "t = 1..5 take the un-normalised step θ ← θ − η m̂). In the rectified branch torch "
      "uses η·r_t·m̂·sqrt(1−β2^t)/(sqrt(v)+ε): ε is added to the UN-corrected sqrt(v) "
      "(differs from Adam's sqrt(v̂)+ε by a relative O(ε/|g|) ~ 1e-7 here).")
def _():
    return run_torch(lambda p: torch.optim.RAdam(p, lr=0.01))


@case("torch_radam_decoupled_wd", "torch",
      "torch.optim.RAdam(params, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)",
      "As torch_radam plus θ ← θ(1 − ηλ) before the step.")
def _():
    return run_torch(lambda p: torch.optim.RAdam(p, lr=0.01, weight_decay=0.1,
                                                 decoupled_weight_decay=True))


@case("torch_adam_clip", "torch",
      "torch.optim.Adam(params, lr=0.01); torch.nn.utils.clip_grad_norm_(params, 0.5) "
      "before every step",
      "Global L2 norm over all three tensors; torch scales g by min(1, 0.5/(‖g‖ + 1e-6)) "
      "(note the 1e-6). 'grad_norm' = the pre-clipping norm returned by clip_grad_norm_.")
def _():
    def clip(opt, params, rec, t):
        n = torch.nn.utils.clip_grad_norm_(params, 0.5)
        rec.setdefault("grad_norm", []).append(float(n))
    return run_torch(lambda p: torch.optim.Adam(p, lr=0.01), before_step=clip)


# ---- torch.optim: learning-rate schedules -------------------------------------
def run_torch_sched(make_sched):
    holder = {}

    def make(params):
        opt = torch.optim.SGD(params, lr=0.1)
        holder["sched"] = make_sched(opt)
        return opt

    def before(opt, params, rec, t):
        rec.setdefault("lr", []).append(float(opt.param_groups[0]["lr"]))

    def after(opt, params, rec, t):
        holder["sched"].step()

    return run_torch(make, before_step=before, after_step=after)


@case("torch_sgd_cosine", "torch",
      "opt = torch.optim.SGD(params, lr=0.1); "
      "torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6); scheduler.step() after "
      "each opt.step()",
      "η_t = 0.05(1 + cos(π(t−1)/6)) for step t = 1..6 (eta_min 0); 'lr' = the lr used "
      "at each step. torch computes it recursively, equal to the closed form to ~1e-17.")
def _():
    return run_torch_sched(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=6))


@case("torch_sgd_exponential", "torch",
      "opt = torch.optim.SGD(params, lr=0.1); "
      "torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8); scheduler.step() after "
      "each opt.step()",
      "η_t = 0.1·0.8^(t−1); 'lr' = the lr used at each step.")
def _():
    return run_torch_sched(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.8))


@case("torch_sgd_step", "torch",
      "opt = torch.optim.SGD(params, lr=0.1); "
      "torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5); scheduler.step() "
      "after each opt.step()",
      "η = 0.1, 0.1, 0.05, 0.05, 0.025, 0.025; 'lr' = the lr used at each step.")
def _():
    return run_torch_sched(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5))


@case("torch_sgd_linear_warmup", "torch",
      "opt = torch.optim.SGD(params, lr=0.1); "
      "torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=3); "
      "scheduler.step() after each opt.step()",
      "Linear warm-up, end_factor 1: η = 0.025, 0.05, 0.075, 0.1, 0.1, 0.1; 'lr' = the lr "
      "used at each step.")
def _():
    return run_torch_sched(
        lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=3))


# ---- optax: EMA momentum, LAMB, Lookahead -----------------------------------------
@case("optax_momentum_ema", "optax",
      "optax.chain(optax.ema(decay=0.9, debias=False), optax.scale(-0.1))",
      "Exactly the study's Momentum: v ← 0.9v + 0.1g with v₀ = 0, θ ← θ − 0.1v.")
def _():
    return run_optax(optax.chain(optax.ema(decay=0.9, debias=False), optax.scale(-0.1)))


@case("optax_lamb", "optax", "optax.lamb(learning_rate=0.01, weight_decay=0.0)",
      "b1 0.9, b2 0.999, eps 1e-6 added to sqrt(v̂), eps_root 0. Per leaf (= per block): "
      "u = m̂/(sqrt(v̂)+ε) + λθ; θ ← θ − η(‖θ‖/‖u‖)u, ratio 1 if either norm is 0 "
      "(no clipping of the ratio, trust_coefficient 1).")
def _():
    return run_optax(optax.lamb(learning_rate=0.01, weight_decay=0.0))


@case("optax_lamb_wd", "optax", "optax.lamb(learning_rate=0.01, weight_decay=0.1)",
      "As optax_lamb with λ = 0.1 applied to every block (mask=None), inside the trust "
      "ratio (u includes λθ).")
def _():
    return run_optax(optax.lamb(learning_rate=0.01, weight_decay=0.1))


@case("optax_lookahead_sgd", "optax",
      "optax.lookahead(optax.sgd(0.1), sync_period=5, slow_step_size=0.5); params = "
      "optax.LookaheadParams.init_synced(params); gradient at params.fast",
      "slow₀ = θ₀; after fast step 5 (and 10, ...): slow ← slow + α(fast − slow), "
      "fast ← slow. 'theta' = fast weights, 'slow' = slow weights after each step.")
def _():
    loss = make_jax_loss()
    grad = jax.grad(loss)
    tx = optax.lookahead(optax.sgd(0.1), sync_period=5, slow_step_size=0.5)
    params = optax.LookaheadParams.init_synced(jax_params())
    state = tx.init(params)
    rec = {"theta": [], "slow": []}
    for _t in range(N_STEPS):
        g = grad(params.fast)
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        rec["theta"].append(as_list(jax_flat(params.fast)))
        rec["slow"].append(as_list(jax_flat(params.slow)))
    return rec


# ---- Lookahead / Ranger (torch packages) -----------------------------------------
def lookahead_slow_recorder(key):
    def after(opt, params, rec, t):
        rec.setdefault("slow", []).append(
            as_list(full_flat_from_parts([opt.state[p][key].detach().numpy() for p in params])))
    return after


@case("pytorch_optimizer_lookahead_sgd", "pytorch_optimizer",
      "pytorch_optimizer.Lookahead(torch.optim.SGD(params, lr=0.1), k=5, alpha=0.5)",
      "pullback_momentum 'none'. slow₀ = θ₀ (taken at construction); after step 5: "
      "slow ← slow + α(fast − slow), fast ← slow. Same definition as optax_lookahead_sgd. "
      "'slow' = slow weights after each step.")
def _():
    import pytorch_optimizer
    return run_torch(lambda p: pytorch_optimizer.Lookahead(torch.optim.SGD(p, lr=0.1), k=5,
                                                           alpha=0.5),
                     after_step=lookahead_slow_recorder("slow_params"))


@case("torch_optimizer_lookahead_sgd", "torch-optimizer",
      "torch_optimizer.Lookahead(torch.optim.SGD(params, lr=0.1), k=5, alpha=0.5)",
      "DIFFERENT SCHEDULE from the paper/optax: the counter starts at 0 and syncs when it "
      "is 0 BEFORE incrementing, i.e. after steps 1, 6, 11, ...; the slow copy is created "
      "at the first sync from the already-updated fast weights, so slow = θ₁ after step 1 "
      "(a no-op sync) and the first real sync is after step 6: slow ← θ₁ + α(θ₆ − θ₁). "
      "'slow' = slow weights after each step.")
def _():
    import torch_optimizer
    return run_torch(lambda p: torch_optimizer.Lookahead(torch.optim.SGD(p, lr=0.1), k=5,
                                                         alpha=0.5),
                     after_step=lookahead_slow_recorder("slow_param"))


@case("pytorch_ranger_ranger", "pytorch-ranger (= torch_optimizer.Ranger)",
      "pytorch_ranger.Ranger(params, lr=0.01, alpha=0.5, k=6, betas=(0.95, 0.999))",
      "Ranger 9.3.19 (lessw2020): RAdam + Lookahead, no gradient centralization, eps 1e-5 "
      "(default), N_sma_threshhold 5 (rectify iff ρ_t > 5 → first at t = 6), weight_decay 0. "
      "Rectified step: θ ← θ − η·sqrt((1−β2^t)(ρ_t−4)(ρ_t−2)ρ∞/((ρ∞−4)(ρ∞−2)ρ_t))/(1−β1^t)"
      "·m/(sqrt(v)+ε) — ε on the UN-corrected sqrt(v) (ε = 1e-5 matters at ~1e-4 relative "
      "here); else θ ← θ − η m/(1−β1^t). Lookahead: slow₀ = θ₀, sync after step 6 "
      "(slow ← slow + α(fast − slow), fast ← slow). The RAdam arithmetic is done in "
      "FLOAT32 (grad.float(), p.data.float()), so this trajectory is only float32-accurate "
      "(~1e-7 relative). 'slow' = slow weights after each step.")
def _():
    import pytorch_ranger
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_torch(lambda p: pytorch_ranger.Ranger(p, lr=0.01, alpha=0.5, k=6,
                                                         betas=(0.95, 0.999)),
                         after_step=lookahead_slow_recorder("slow_buffer"))


@case("pytorch_optimizer_ranger", "pytorch_optimizer",
      "pytorch_optimizer.Ranger(params, lr=0.01, betas=(0.95, 0.999), alpha=0.5, k=6, "
      "use_gc=False, degenerated_to_sgd=True)",
      "Gradient centralization is ON by default in this Ranger (it would subtract the row "
      "mean of the 2x4 radial gradient) — disabled here with use_gc=False. "
      "degenerated_to_sgd=True is REQUIRED: with the default False, pytorch_optimizer 4.1.0 "
      "applies the un-rectified step with the wrong sign (θ ← θ + η m̂, uphill) for t ≤ 5. "
      "Threshold ρ_t ≥ 5 (same steps as > 5 here), eps 1e-5 on un-corrected sqrt(v), "
      "decoupled weight decay 0, float64 arithmetic. Otherwise the same definition as "
      "pytorch_ranger_ranger. 'slow' = slow weights after each step.")
def _():
    import pytorch_optimizer
    return run_torch(lambda p: pytorch_optimizer.Ranger(p, lr=0.01, betas=(0.95, 0.999),
                                                        alpha=0.5, k=6, use_gc=False,
                                                        degenerated_to_sgd=True),
                     after_step=lookahead_slow_recorder("slow_buffer"))


@case("pytorch_optimizer_lookahead_torch_radam", "pytorch_optimizer + torch",
      "pytorch_optimizer.Lookahead(torch.optim.RAdam(params, lr=0.01, betas=(0.95, 0.999), "
      "eps=1e-5), k=6, alpha=0.5)",
      "Ranger assembled from torch's RAdam (ρ_t > 5, ε on un-corrected sqrt(v), un-rectified "
      "step η m̂) and a paper-style Lookahead (slow₀ = θ₀, sync after step 6). Should equal "
      "pytorch_optimizer_ranger up to rounding. 'slow' = slow weights after each step.")
def _():
    import pytorch_optimizer
    return run_torch(
        lambda p: pytorch_optimizer.Lookahead(
            torch.optim.RAdam(p, lr=0.01, betas=(0.95, 0.999), eps=1e-5), k=6, alpha=0.5),
        after_step=lookahead_slow_recorder("slow_params"))


# ---- Schedule-Free -------------------------------------------------------------------
def run_schedulefree(make):
    blocks = torch_blocks()
    opt = make(blocks)
    opt.train()
    rec = {"theta": [], "x": [], "y": [], "z": [], "scheduled_lr": []}
    for _t in range(N_STEPS):
        torch_set_grads(blocks)          # gradient at y (train mode)
        opt.step()
        rec["scheduled_lr"].append(float(opt.param_groups[0]["scheduled_lr"]))
        rec["y"].append(as_list(torch_flat(blocks).numpy()))
        rec["z"].append(as_list(full_flat_from_parts(
            [opt.state[p]["z"].detach().numpy() for p in blocks])))
        opt.eval()                       # parameters now hold x
        rec["x"].append(as_list(torch_flat(blocks).numpy()))
        opt.train()                      # back to y
    rec["theta"] = rec["x"]
    return rec


SF_NOTES = (
    " Recorded after each step: 'x' (= 'theta', the evaluation point, read via "
    "optimizer.eval()), 'y' (the parameters in train mode, where the next gradient is "
    "taken), 'z' (optimizer.state[p]['z']), 'scheduled_lr' (γ_k). Conventions of "
    "schedulefree 1.4.1: step k from 0; γ_k = lr·min(1, (k+1)/warmup_steps); "
    "lr_max = max γ so far; weight w_k = (k+1)^r · lr_max^weight_lr_power with r = 0, "
    "weight_lr_power = 2; c = w_k/Σw; z ← z − γ_k d; x ← (1−c)x + c z; "
    "y = (1−β)z + βx. Internally only y and z are stored, x = (y − (1−β)z)/β is "
    "reconstructed by eval() (one extra rounding per eval/train round trip, ~1e-16)."
)


@case("schedulefree_sgd", "schedulefree",
      "schedulefree.SGDScheduleFree(params, lr=0.5, momentum=0.9, weight_decay=0, "
      "warmup_steps=2, r=0.0, weight_lr_power=2.0); optimizer.train()",
      "d = g (weight decay 0; if set it would be added to g at y)." + SF_NOTES)
def _():
    import schedulefree
    return run_schedulefree(lambda p: schedulefree.SGDScheduleFree(
        p, lr=0.5, momentum=0.9, weight_decay=0, warmup_steps=2, r=0.0, weight_lr_power=2.0))


@case("schedulefree_adamw", "schedulefree",
      "schedulefree.AdamWScheduleFree(params, lr=0.05, betas=(0.9, 0.999), eps=1e-8, "
      "weight_decay=0, warmup_steps=2, r=0.0, weight_lr_power=2.0); optimizer.train()",
      "d = g/(sqrt(v/(1−β2^(k+1))) + ε) (+ λy, λ = 0 here), v ← β2 v + (1−β2)g²; no first "
      "moment (β1 is the interpolation β)." + SF_NOTES)
def _():
    import schedulefree
    return run_schedulefree(lambda p: schedulefree.AdamWScheduleFree(
        p, lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, warmup_steps=2, r=0.0,
        weight_lr_power=2.0))


def run_optax_schedule_free(tx):
    loss = make_jax_loss()
    grad = jax.grad(loss)
    params = jax_params()
    state = tx.init(params)
    rec = {"theta": [], "x": [], "y": [], "z": []}
    for _t in range(N_STEPS):
        g = grad(params)                 # gradient at y
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        x = optax.contrib.schedule_free_eval_params(state, params)
        rec["y"].append(as_list(jax_flat(params)))
        rec["z"].append(as_list(jax_flat(state.z)))
        rec["x"].append(as_list(jax_flat(x)))
    rec["theta"] = rec["x"]
    return rec


OPTAX_SF_NOTES = (
    " 'x' (= 'theta', from optax.contrib.schedule_free_eval_params), 'y' (the params the "
    "gradient is taken at), 'z' (state.z). WARM-UP DIFFERS from schedulefree: optax "
    "builds warmup_constant_schedule(0, lr, warmup_steps) and evaluates it with TWO "
    "counters — the averaging weight uses the schedule at count k+1 (= schedulefree's "
    "γ_k) but the inner base optimizer's z-step uses it at count k, so the z-step at the "
    "first step is 0·d and at step k+1 uses γ = lr·min(1, k/warmup). Moreover the "
    "schedule returns FLOAT32 values even with jax_enable_x64 (0.025 becomes "
    "0.02500000037...), which perturbs the AdamW z-steps at ~1e-9. Not a reference for "
    "OPTIMIZERS.md's warm-up; kept as a documented cross-library comparison (both "
    "findings were verified against a float64 transcription)."
)


@case("optax_schedule_free_sgd", "optax",
      "optax.contrib.schedule_free_sgd(learning_rate=0.5, warmup_steps=2, b1=0.9, "
      "weight_lr_power=2.0)", "Schedule-Free SGD in optax." + OPTAX_SF_NOTES)
def _():
    return run_optax_schedule_free(optax.contrib.schedule_free_sgd(
        learning_rate=0.5, warmup_steps=2, b1=0.9, weight_lr_power=2.0))


@case("optax_schedule_free_adamw", "optax",
      "optax.contrib.schedule_free_adamw(learning_rate=0.05, warmup_steps=2, b1=0.9, "
      "b2=0.999, eps=1e-8, weight_decay=0.0, weight_lr_power=2.0)",
      "Schedule-Free AdamW in optax; d = g/(sqrt(v̂)+ε) with bias-corrected v "
      "(scale_by_rms(bias_correction=True, eps_in_sqrt=False))." + OPTAX_SF_NOTES)
def _():
    return run_optax_schedule_free(optax.contrib.schedule_free_adamw(
        learning_rate=0.05, warmup_steps=2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
        weight_lr_power=2.0))


@case("schedulefree_sgd_nowarmup", "schedulefree",
      "schedulefree.SGDScheduleFree(params, lr=0.5, momentum=0.9, weight_decay=0, "
      "warmup_steps=0); optimizer.train()",
      "No warm-up (γ_k = lr, all weights equal → c = 1/(k+1)). Cross-checked against "
      "optax_schedule_free_sgd_nowarmup (same definition, independent code)." + SF_NOTES)
def _():
    import schedulefree
    return run_schedulefree(lambda p: schedulefree.SGDScheduleFree(
        p, lr=0.5, momentum=0.9, weight_decay=0, warmup_steps=0))


@case("optax_schedule_free_sgd_nowarmup", "optax",
      "optax.contrib.schedule_free_sgd(learning_rate=0.5, warmup_steps=None, b1=0.9, "
      "weight_lr_power=2.0)",
      "No warm-up; without a schedule the two-counter issue disappears and this equals "
      "schedulefree_sgd_nowarmup. 'x' (= 'theta'), 'y', 'z' as in optax_schedule_free_sgd.")
def _():
    return run_optax_schedule_free(optax.contrib.schedule_free_sgd(
        learning_rate=0.5, warmup_steps=None, b1=0.9, weight_lr_power=2.0))


# ---- Muon (radial 2x4 block only) ------------------------------------------------------
MUON_FROZEN = (" Only the 2x4 `radial` block is optimised; `species` and `moment` are NOT "
               "updated (held at θ₀; they still enter the loss and hence radial's gradient).")


@case("muon_keller_single_device", "muon-optimizer (Keller Jordan)",
      "muon.SingleDeviceMuon([radial], lr=0.02, weight_decay=0, momentum=0.95)",
      "Keller Jordan's published definition = OPTIMIZERS.md: m ← βm + (1−β)g "
      "(momentum.lerp_(g, 1−β)), u = (1−β)g + βm (Nesterov, grad.lerp_(m, β)), "
      "X = u/(‖u‖_F + 1e-7), wide orientation (2x4 is already wide), 5 quintic steps "
      "(3.4445, −4.7750, 2.0315), scale √max(1, rows/cols) = 1 for 2x4, θ ← θ − ηU. "
      "BUT the Newton–Schulz iteration runs in BFLOAT16 (hard-coded G.bfloat16()), so the "
      "update is only accurate to ~3 significant digits (θ to ~1e-4 absolute here); use "
      "muon_optax_keller_float64 for a float64 reference of the same definition." + MUON_FROZEN)
def _():
    import muon
    return run_torch(lambda p: muon.SingleDeviceMuon(p, lr=0.02, weight_decay=0, momentum=0.95),
                     trainable=("radial",))


@case("muon_keller_with_aux_adam", "muon-optimizer (Keller Jordan)",
      "muon.SingleDeviceMuonWithAuxAdam([dict(params=[radial], use_muon=True, lr=0.02, "
      "momentum=0.95, weight_decay=0), dict(params=[species, moment], use_muon=False, "
      "lr=3e-4, betas=(0.9, 0.95), eps=1e-10, weight_decay=0)])",
      "radial: as muon_keller_single_device (bfloat16 Newton–Schulz). species & moment: the "
      "package's auxiliary AdamW with its defaults (= OPTIMIZERS.md's non-matrix defaults): "
      "m̂/(sqrt(v̂) + 1e-10), η 3e-4, betas (0.9, 0.95), bias-corrected, float64.")
def _():
    import muon
    return run_torch(lambda p: muon.SingleDeviceMuonWithAuxAdam([
        dict(params=[p[0]], use_muon=True, lr=0.02, momentum=0.95, weight_decay=0),
        dict(params=[p[1], p[2]], use_muon=False, lr=3e-4, betas=(0.9, 0.95), eps=1e-10,
             weight_decay=0)]))


@case("muon_torch", "torch",
      "torch.optim.Muon([radial], lr=0.02, weight_decay=0.0, momentum=0.95, nesterov=True, "
      "ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-07, ns_steps=5, adjust_lr_fn=None)",
      "torch ≥ 2.9's Muon. Same definition as Keller's (the code uses buf.lerp_(g, 1−μ) and "
      "g.lerp(buf, μ), i.e. the EMA/Nesterov form above, although its docstring writes "
      "B ← μB + g), scale √max(1, A/B) ('original') = 1 for 2x4. Differences: weight_decay "
      "defaults to 0.1 (set to 0 here); normalisation X/max(‖X‖_F, eps) instead of "
      "X/(‖X‖_F + eps); NS in BFLOAT16 like Keller's (~3 significant digits)." + MUON_FROZEN)
def _():
    return run_torch(lambda p: torch.optim.Muon(
        p, lr=0.02, weight_decay=0.0, momentum=0.95, nesterov=True,
        ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-07, ns_steps=5, adjust_lr_fn=None),
        trainable=("radial",))


@case("muon_optax_keller_float64", "optax",
      "optax.chain(optax.trace(decay=0.95, nesterov=True), optax.scale(1 - 0.95), "
      "optax.contrib.scale_by_muon(beta=0.0, nesterov=False, eps=1e-7, weight_dimension_numbers="
      "{'radial': optax.contrib.MuonDimensionNumbers()}), optax.scale(-0.02))",
      "Keller Jordan's definition (= OPTIMIZERS.md) in FLOAT64, assembled from optax parts: "
      "optax.trace(nesterov) gives g + βT with T = Σβ^(t−s)g_s = m/(1−β), so after "
      "scale(1−β) the input to Newton–Schulz is exactly u = (1−β)g + βm with "
      "m ← βm + (1−β)g, m₀ = 0; scale_by_muon with beta=0 is a pure orthogonalisation "
      "(its momentum and bias correction become the identity): X = u/(‖u‖_F + 1e-7), "
      "transpose if rows > cols, 5 quintic steps (3.4445, −4.7750, 2.0315); the Keller "
      "shape factor √max(1, rows/cols) is 1 for 2x4 so no scaling step is needed; "
      "θ ← θ − 0.02 U. This is the precise Muon reference." + MUON_FROZEN)
def _():
    tx = optax.chain(optax.trace(decay=0.95, nesterov=True), optax.scale(1 - 0.95),
                     optax.contrib.scale_by_muon(
                         beta=0.0, nesterov=False, eps=1e-7,
                         weight_dimension_numbers={"radial": optax.contrib.MuonDimensionNumbers()}),
                     optax.scale(-0.02))
    return run_optax(tx, names=("radial",))


@case("muon_optax_keller_float64_aux_adam", "optax",
      "optax.partition({'muon': <the muon_optax_keller_float64 chain, with "
      "weight_dimension_numbers=lambda u: jax.tree.map(lambda _: "
      "optax.contrib.MuonDimensionNumbers(), u)>, 'adam': optax.adam(3e-4, b1=0.9, "
      "b2=0.95, eps=1e-10)}, {'radial': 'muon', 'species': 'adam', 'moment': 'adam'})",
      "Float64 counterpart of muon_keller_with_aux_adam: radial by Keller's Muon exactly as "
      "in muon_optax_keller_float64; species & moment by Adam with OPTIMIZERS.md's "
      "non-matrix defaults (η 3e-4, betas (0.9, 0.95), ε 1e-10 added to sqrt(v̂), "
      "bias-corrected, no weight decay).")
def _():
    muon_chain = optax.chain(
        optax.trace(decay=0.95, nesterov=True), optax.scale(1 - 0.95),
        optax.contrib.scale_by_muon(
            beta=0.0, nesterov=False, eps=1e-7,
            weight_dimension_numbers=lambda u: jax.tree.map(
                lambda _: optax.contrib.MuonDimensionNumbers(), u)),
        optax.scale(-0.02))
    tx = optax.partition({"muon": muon_chain,
                          "adam": optax.adam(3e-4, b1=0.9, b2=0.95, eps=1e-10)},
                         {"radial": "muon", "species": "adam", "moment": "adam"})
    return run_optax(tx)


@case("muon_optax_default", "optax",
      "optax.contrib.muon(learning_rate=0.02)  # on {'radial': 2x4} only",
      "optax's own Muon conventions, which DIFFER from Keller/OPTIMIZERS.md in three ways: "
      "(1) bias-corrected Nesterov: m ← βm + (1−β)g, "
      "u = β·m/(1−β^(t+1)) + (1−β)·g/(1−β^t) (not a uniform rescaling of Keller's u, so the "
      "direction differs); (2) shape factor √max(1, fan_out/fan_in) with fan_in = rows "
      "(axis 0 is the reduction axis, x@W convention) = √max(1, 4/2) = √2 for the 2x4 "
      "block (Keller: √max(1, rows/cols) = 1); (3) NS eps 1e-8 (X/(‖X‖_F + 1e-8)). Same "
      "quintic coefficients and 5 steps; float64." + MUON_FROZEN)
def _():
    return run_optax(optax.contrib.muon(learning_rate=0.02), names=("radial",))


# ---- SOAP ----------------------------------------------------------------------------
SOAP_NOTES = (
    "pytorch_optimizer's port of the SOAP reference code (the authors' soap.py is not "
    "published on PyPI). Conventions: the FIRST step() only initialises (L, R from g₁, "
    "Q = eigh, eigenvectors sorted by descending eigenvalue) and does NOT move θ, so "
    "theta[0] = θ₀ and 5 updates happen in 6 calls. Per 2-D block, at call n ≥ 2 with "
    "s = n−1: G̃ = Q_Lᵀ G Q_R; the first moment M is kept in the ORIGINAL basis "
    "(M ← β1 M + (1−β1)G, projected with the current Q each step — equivalent to "
    "re-rotating it at a refresh); V ← β2 V + (1−β2)G̃² in the rotated basis; "
    "U = Q_L (Q_Lᵀ M Q_R / (sqrt(V) + ε)) Q_Rᵀ with ε on the UN-corrected sqrt(V); "
    "θ ← θ − η·sqrt(1−β2^s)/(1−β1^s)·U; then θ ← θ(1 − ηλ) (base η); then L, R ← "
    "β_s L + (1−β_s)GGᵀ, GᵀG (β_s = β2 = 0.95) and, if s % precondition_frequency == 0 "
    "(calls 3 and 5 here), refresh: est = diag(QᵀLQ), order = argsort(est, descending), "
    "permute V along that axis, Q ← QR(L Q[:, order]) — the QR is done in FLOAT32 "
    "(power_iter.to(torch.float32)), so after the first refresh the trajectory is only "
    "float32-accurate (~1e-7 relative). max_precondition_dim 10000, merge_dims False, "
    "correct_bias True, normalize_gradient False, eps 1e-8. "
    "ILL-CONDITIONED REFERENCE: θ does not move at call 1, so g₂ = g₁, and the first "
    "bases come from a single gradient: R = (1−β_s)G₁ᵀG₁ (4x4) has rank 2 (and a 1-D "
    "block's ggᵀ has rank 1), so the eigenvectors spanning its null space are fixed only "
    "by round-off (torch.linalg.eigh vs numpy.linalg.eigh, or the order of the float "
    "operations forming R, give different, equally valid bases). Adam's element-wise "
    "normalisation is not invariant to that choice, so from step 3 on the trajectory of "
    "a correct re-implementation differs from this one by ~1e-4..3e-3 unless it uses the "
    "same bases. Steps 1-2 (theta[0:2]) are basis-independent (to ~1e-10). To allow exact "
    "comparison, 'state' records after every call, per block: 'GG' (the EMA "
    "preconditioner matrices, [L, R] for radial, [ggᵀ] or [] for a 1-D block), 'Q' (the "
    "eigenbases the NEXT call will use, columns ordered as the library orders them; [] "
    "= no rotation), 'exp_avg' (M, original basis) and 'exp_avg_sq' (V, rotated basis, "
    "already permuted if the call refreshed Q). state[k] is the state after call k+1. "
    "Given these Q, an independent float64 transcription of the rules above reproduces "
    "theta to ~1e-11. The refresh itself is also ill-conditioned where GG is rank-"
    "deficient (a 5-vector's ggᵀ after 3 gradients has rank 3: the QR columns of the "
    "null directions are arbitrary) and the float32 QR changes Q by up to ~3e-5 for "
    "radial."
)


def soap_state_recorder(opt, params, rec, t):
    def tolist(x):
        return [] if (isinstance(x, list) and len(x) == 0) else np.asarray(
            x.detach().numpy(), dtype=np.float64).tolist()
    snap = {}
    for name, p in zip(BLOCK_ORDER, params):
        st = opt.state[p]
        snap[name] = {
            "GG": [tolist(m) for m in st["GG"]],
            "Q": [tolist(m) for m in st["Q"]],
            "exp_avg": tolist(st["exp_avg"]),
            "exp_avg_sq": tolist(st["exp_avg_sq"]),
        }
    rec.setdefault("state", []).append(snap)


@case("soap_pytorch_optimizer", "pytorch_optimizer",
      "pytorch_optimizer.SOAP(params, lr=0.003, betas=(0.95, 0.95), weight_decay=0.01, "
      "precondition_frequency=2)",
      SOAP_NOTES + " precondition_1d=False (default): the 1-D blocks `species` and `moment` "
      "get no rotation, i.e. SOAP's Adam (same skip-first-step, bias correction, ε and "
      "weight-decay conventions).")
def _():
    import pytorch_optimizer
    return run_torch(lambda p: pytorch_optimizer.SOAP(
        p, lr=0.003, betas=(0.95, 0.95), weight_decay=0.01, precondition_frequency=2),
        after_step=soap_state_recorder)


@case("soap_pytorch_optimizer_precondition_1d", "pytorch_optimizer",
      "pytorch_optimizer.SOAP(params, lr=0.003, betas=(0.95, 0.95), weight_decay=0.01, "
      "precondition_frequency=2, precondition_1d=True)",
      SOAP_NOTES + " precondition_1d=True: each 1-D block of length n gets one full n×n "
      "preconditioner (ggᵀ EMA, rotation Qᵀg, back-rotation Q·).")
def _():
    import pytorch_optimizer
    return run_torch(lambda p: pytorch_optimizer.SOAP(
        p, lr=0.003, betas=(0.95, 0.95), weight_decay=0.01, precondition_frequency=2,
        precondition_1d=True),
        after_step=soap_state_recorder)


# --------------------------------------------------------------------------
# consistency checks (not stored)
# --------------------------------------------------------------------------


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def check(label, value, tol):
    ok = value <= tol
    print(f"  [{'ok' if ok else 'FAIL'}] {label}: {value:.3e} (tol {tol:.0e})")
    return ok


def consistency_checks(cases):
    th = cases
    ok = True
    print("consistency checks:")
    blocks = torch_blocks()
    torch_set_grads(blocks)
    g_auto = torch.cat([p.grad.reshape(-1) for p in blocks]).numpy()
    ok &= check("autograd vs analytic gradient at θ₀", max_diff(g_auto, grad_np(THETA0_NP)), 1e-13)
    gj = jax.grad(make_jax_loss())(jax_params())
    ok &= check("jax grad vs analytic gradient at θ₀",
                max_diff(jax_flat(gj), grad_np(THETA0_NP)), 1e-13)
    ok &= check("optax_momentum_ema vs torch_momentum_ema_lr_scaled",
                max_diff(th["optax_momentum_ema"]["theta"],
                         th["torch_momentum_ema_lr_scaled"]["theta"]), 1e-13)
    ok &= check("optax_lookahead_sgd vs pytorch_optimizer_lookahead_sgd (theta)",
                max_diff(th["optax_lookahead_sgd"]["theta"],
                         th["pytorch_optimizer_lookahead_sgd"]["theta"]), 1e-13)
    ok &= check("optax_lookahead_sgd vs pytorch_optimizer_lookahead_sgd (slow)",
                max_diff(th["optax_lookahead_sgd"]["slow"],
                         th["pytorch_optimizer_lookahead_sgd"]["slow"]), 1e-13)
    ok &= check("optax_lookahead_sgd first 5 fast steps vs torch_sgd",
                max_diff(th["optax_lookahead_sgd"]["theta"][:4], th["torch_sgd"]["theta"][:4]),
                1e-13)
    ok &= check("pytorch_optimizer_ranger vs pytorch_optimizer_lookahead_torch_radam",
                max_diff(th["pytorch_optimizer_ranger"]["theta"],
                         th["pytorch_optimizer_lookahead_torch_radam"]["theta"]), 1e-13)
    ok &= check("pytorch_ranger_ranger (float32 inside) vs pytorch_optimizer_ranger",
                max_diff(th["pytorch_ranger_ranger"]["theta"],
                         th["pytorch_optimizer_ranger"]["theta"]), 1e-6)
    ok &= check("schedulefree_sgd_nowarmup vs optax_schedule_free_sgd_nowarmup (x)",
                max_diff(th["schedulefree_sgd_nowarmup"]["x"],
                         th["optax_schedule_free_sgd_nowarmup"]["x"]), 1e-13)
    ok &= check("schedulefree_sgd_nowarmup vs optax_schedule_free_sgd_nowarmup (y)",
                max_diff(th["schedulefree_sgd_nowarmup"]["y"],
                         th["optax_schedule_free_sgd_nowarmup"]["y"]), 1e-13)
    ok &= check("muon_keller_single_device (bf16) vs muon_optax_keller_float64",
                max_diff(th["muon_keller_single_device"]["theta"],
                         th["muon_optax_keller_float64"]["theta"]), 2e-3)
    ok &= check("muon_torch (bf16) vs muon_optax_keller_float64",
                max_diff(th["muon_torch"]["theta"], th["muon_optax_keller_float64"]["theta"]),
                2e-3)
    ok &= check("muon_keller_with_aux_adam (bf16) vs muon_optax_keller_float64_aux_adam",
                max_diff(th["muon_keller_with_aux_adam"]["theta"],
                         th["muon_optax_keller_float64_aux_adam"]["theta"]), 2e-3)
    ok &= check("muon_optax_keller_float64_aux_adam radial vs muon_optax_keller_float64 "
                "(step 1)", max_diff(th["muon_optax_keller_float64_aux_adam"]["theta"][0][:8],
                                     th["muon_optax_keller_float64"]["theta"][0][:8]), 1e-16)
    ok &= check("muon_keller_with_aux_adam radial vs muon_keller_single_device (step 1)",
                max_diff(th["muon_keller_with_aux_adam"]["theta"][0][:8],
                         th["muon_keller_single_device"]["theta"][0][:8]), 0.0)
    sf = th["schedulefree_sgd"]
    for k in range(N_STEPS):
        y = np.asarray(sf["y"][k]); z = np.asarray(sf["z"][k]); x = np.asarray(sf["x"][k])
        ok &= check(f"schedulefree_sgd y = (1-β)z + βx at step {k + 1}",
                    max_diff(y, 0.1 * z + 0.9 * x), 1e-14) if k in (0, N_STEPS - 1) else True
    soap = th["soap_pytorch_optimizer"]["theta"][0]
    ok &= check("SOAP first call leaves θ unchanged", max_diff(soap, THETA0_NP), 0.0)
    return ok


def versions():
    out = {"python": platform.python_version()}
    for dist in ("numpy", "torch", "jax", "jaxlib", "optax", "schedulefree", "muon-optimizer",
                 "pytorch_optimizer", "torch-optimizer", "pytorch-ranger"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def main(argv=None):
    here = Path(__file__).resolve().parent
    default_out = here.parent / "data" / "optim" / "optimizer_references.json"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, default=default_out)
    args = ap.parse_args(argv)

    results = {}
    for name, spec in CASES.items():
        rec = spec["fn"]()
        assert len(rec["theta"]) == N_STEPS and all(len(r) == 14 for r in rec["theta"]), name
        assert all(math.isfinite(v) for r in rec["theta"] for v in r), name
        results[name] = rec
        print(f"{name:45s} f(θ₆) = {loss_np(np.asarray(rec['theta'][-1])):.6f}")
    print(f"f(θ₀) = {loss_np(THETA0_NP):.6f}")
    if not consistency_checks(results):
        print("consistency checks failed; JSON not written", file=sys.stderr)
        return 1

    cases_out = {}
    for name, spec in CASES.items():
        entry = {"library": spec["library"], "call": spec["call"], "notes": spec["notes"]}
        entry.update(results[name])
        cases_out[name] = entry
    doc = {
        "description": (
            "Independent reference trajectories for mtpfit's optimizers on a 14-parameter "
            "float64 test problem f(θ) = ½θᵀAθ − bᵀθ + 0.05Σθ_i⁴ (A, b, theta0 below, from "
            "numpy.random.default_rng(2026): G = normal(14,14), A = G Gᵀ/14 + 0.5 I, "
            "b = normal(14), theta0 = 0.5·normal(14)). theta[k] = flat θ after step k+1 "
            "(blocks radial[0:8] as row-major 2x4, species[8:9], moment[9:14]). Generated by "
            "tests/reference/make_optimizer_references.py; see tests/data/optim/README.md."),
        "problem": {
            "A": [as_list(row) for row in A_NP],
            "b": as_list(B_NP),
            "theta0": as_list(THETA0_NP),
            # [start, stop, shape]: radial's [1, 2, 4] = one species pair x (2 x 4); every
            # library here treats it as the 2x4 matrix radial_matrix_shape.
            "blocks": {"radial": [0, 8, [1, 2, 4]], "species": [8, 9], "moment": [9, 14]},
            "radial_matrix_shape": [2, 4],
            "loss_theta0": float(loss_np(THETA0_NP)),
            "grad_theta0": as_list(grad_np(THETA0_NP)),
        },
        "n_steps": N_STEPS,
        "versions": versions(),
        "cases": cases_out,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    print(f"wrote {args.output} ({len(cases_out)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
