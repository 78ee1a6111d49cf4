"""Fine-tuning an MTP on the error of its own relaxations (Dramko et al., arXiv:2512.01067), optionally mixed with
the usual energy/force loss so the fit does not drift."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.optimize

from ..objective.objective import Objective
from ..optim import make_optimizer
from ..optim.blocks import ParameterBlocks
from ..optim.result import OptimizationResult
from ..potential.mtp import MTP
from ..train.checkpoint import load_checkpoint, save_checkpoint
from .minima import RelaxationPair
from .relaxation import unrolled_relaxation

__all__ = ["RelaxationObjective", "finetune_relax", "SCIPY_METHODS"]

#: Full-batch methods handed to :func:`scipy.optimize.minimize`; every other name is a zoo optimizer.
SCIPY_METHODS = ("BFGS", "L-BFGS-B", "CG")


class RelaxationObjective:
    """L(θ) = D̄(θ)/D̄(θ₀) + mix · L_EF(θ)/L_EF(θ₀).

    D̄ is the mean over relaxation pairs of the mass-weighted RMS displacement between the structure after k
    steps of ``rule`` from the pair's start and its DFT minimum (:func:`unrolled_relaxation`); L_EF is the
    energy/force(/stress) loss of ``energy_force``. Both terms are divided by their values at θ₀, so ``mix``
    weighs relative changes (mix = 1: a 1 % gain in one is worth a 1 % loss in the other).

    Parameters
    ----------
    mtp : MTP
        The potential; θ₀ is its θ.
    pairs : sequence of RelaxationPair
        Fine-tuning starts and minima.
    rule : GradientDescent or FIRE
    k : int
        Unrolled steps.
    energy_force : Objective, optional
        The energy/force loss over a training set; required when ``mix`` > 0.
    mix : float
        Weight of the energy/force term (0: relaxation error alone).
    n_threads : int
        Relaxations run concurrently on this many threads (0: the core's default); the core releases the GIL.

    Raises
    ------
    ValueError
        If ``pairs`` is empty, ``mix`` < 0, or ``mix`` > 0 without ``energy_force``.
    """

    def __init__(self, mtp: MTP, pairs: Sequence[RelaxationPair], rule, k: int,
                 energy_force: Objective | None = None, mix: float = 0.0, n_threads: int = 0):
        from .. import _core

        if not pairs:
            raise ValueError("no relaxation pairs to fine-tune on")
        if mix < 0 or (mix > 0 and energy_force is None):
            raise ValueError(f"mix must be ≥ 0 and needs an energy/force objective when > 0, got mix = {mix}")
        self.mtp, self.pairs, self.rule, self.k = mtp, list(pairs), rule, k
        self.energy_force, self.mix = energy_force, mix
        self.n_threads = n_threads or _core.max_threads()
        self.n_params = mtp.n_params
        self.n_evaluations = 0
        self.last_terms: dict = {}
        theta0 = mtp.theta
        self.relaxation_scale = self.relaxation_error(theta0, gradient=False)[0]
        self.energy_force_scale = float(energy_force.fun(theta0)) if mix > 0 else 1.0
        if not (self.relaxation_scale > 0 and self.energy_force_scale > 0):
            raise ValueError("the relaxation error or the energy/force loss is zero at θ₀: nothing to normalise by")

    def relaxation_error(self, theta: np.ndarray, subset: Sequence[int] | None = None,
                         gradient: bool = True) -> tuple[float, np.ndarray | None]:
        """Mean relaxed-structure error D̄ (Å) over the pairs (or ``subset`` of them) and its θ-gradient."""
        chosen = [self.pairs[i] for i in (range(len(self.pairs)) if subset is None else subset)]

        def one(pair):
            return unrolled_relaxation(self.mtp, theta, pair.start, pair.minimum, self.rule, self.k, gradient)

        with ThreadPoolExecutor(self.n_threads) as pool:
            results = list(pool.map(one, chosen))
        D = float(np.mean([r[0] for r in results]))
        grad = np.mean([r[1] for r in results], axis=0) if gradient else None
        return D, grad

    def fun_and_jac(self, theta: np.ndarray, subset: Sequence[int] | None = None) -> tuple[float, np.ndarray]:
        """L(θ) and dL/dθ; ``subset`` restricts the relaxation term to those pairs (the energy/force term always
        covers its whole training set)."""
        self.n_evaluations += 1
        D, grad = self.relaxation_error(theta, subset)
        value, grad = D / self.relaxation_scale, grad / self.relaxation_scale
        self.last_terms = {"relaxation_error": D}
        if self.mix > 0:
            ef, ef_grad = self.energy_force.fun_and_jac(theta)
            value += self.mix * ef / self.energy_force_scale
            grad = grad + self.mix * ef_grad / self.energy_force_scale
            self.last_terms["energy_force_loss"] = float(ef)
        if not np.isfinite(value):
            raise FloatingPointError(f"the fine-tuning loss is {value}")
        return float(value), grad


def finetune_relax(objective: RelaxationObjective, optimizer: str = "adam", max_iter: int = 50,
                   batch_size: int | None = None, seed: int = 0, time_limit: float | None = None,
                   checkpoint: str | Path | None = None, checkpoint_every: int = 5,
                   progress: Callable[[str], None] | None = print, **hyperparameters) -> OptimizationResult:
    """Minimise a :class:`RelaxationObjective` from the potential's θ.

    Parameters
    ----------
    objective : RelaxationObjective
    optimizer : str
        ``BFGS``, ``L-BFGS-B`` or ``CG`` (scipy, full batch), or any name of the zoo
        (:func:`mtpfit.optim.make_optimizer`: adam, soap, muon, …) with ``hyperparameters`` (e.g. ``lr``).
    max_iter : int
        Iterations (scipy) or optimizer steps (zoo).
    batch_size : int, optional
        Zoo optimizers: pairs per step, reshuffled every epoch from ``seed`` (default: all pairs).
    time_limit : float, optional
        Seconds; stop after the first iteration that ends past it.
    checkpoint : path, optional
        Zoo optimizers: an ``.npz`` written atomically every ``checkpoint_every`` steps (θ, optimizer state,
        shuffling, history); if it exists when the run starts, the run continues from it along the trajectory of
        an uninterrupted run. SciPy's methods keep their state to themselves and restart.
    progress : callable or None
        Receives one line per iteration.

    Returns
    -------
    OptimizationResult
        ``x`` the fine-tuned θ; ``history`` rows with ``step``, ``loss`` (the objective on the step's pairs),
        its terms ``relaxation_error`` (Å) and ``energy_force_loss``, and ``elapsed_s``.

    Raises
    ------
    FloatingPointError
        If the loss or a step becomes non-finite.
    """
    say = progress or (lambda line: None)
    start = time.perf_counter()
    history: list[dict] = []
    x0 = objective.mtp.theta.copy()

    def record(step, loss):
        history.append({"step": step, "loss": float(loss), **objective.last_terms,
                        "elapsed_s": time.perf_counter() - start})
        terms = "  ".join(f"{k} {v:.5g}" for k, v in objective.last_terms.items())
        say(f"fine-tune step {step:4d}  loss {loss:.6f}  {terms}  {history[-1]['elapsed_s']:8.1f} s")
        return time_limit is not None and history[-1]["elapsed_s"] > time_limit

    if optimizer in SCIPY_METHODS:
        class _Stop(Exception):
            pass

        last = {}

        def fun(x):
            last["x"], (last["f"], g) = x.copy(), objective.fun_and_jac(x)
            return last["f"], g

        def callback(intermediate_result):
            if record(len(history) + 1, intermediate_result.fun):
                raise _Stop

        try:
            out = scipy.optimize.minimize(fun, x0, jac=True, method=optimizer, callback=callback,
                                          options={"maxiter": max_iter})
            x, fval, message, success = out.x, float(out.fun), str(out.message), bool(out.success)
        except _Stop:
            x, fval, message, success = last["x"], last["f"], "time limit reached", False
        return OptimizationResult(x=x, fun=fval, nit=len(history), nfev=objective.n_evaluations,
                                  success=success, message=message, history=history,
                                  wall_time=time.perf_counter() - start)

    opt = make_optimizer(optimizer, **hyperparameters)
    state = opt.init(x0, ParameterBlocks.of(objective.mtp))
    x = x0
    n = len(objective.pairs)
    batch = n if batch_size is None else min(batch_size, n)
    rng = np.random.default_rng(seed)
    order, position = rng.permutation(n), 0
    done = 0
    if checkpoint and Path(checkpoint).exists():
        x, state, meta = load_checkpoint(checkpoint)
        rng.bit_generator.state = meta["rng"]
        order, position, done = np.array(meta["order"], dtype=np.int64), meta["position"], meta["step"]
        history[:] = meta["history"]
        start -= meta["elapsed_s"]
        say(f"resumed from {checkpoint} at step {done}")

    def save(step):
        save_checkpoint(checkpoint, x, state, {"rng": rng.bit_generator.state, "order": order.tolist(),
                                               "position": position, "step": step, "history": history,
                                               "elapsed_s": time.perf_counter() - start})

    message = f"{max_iter} steps done"
    for step in range(done + 1, max_iter + 1):
        if position + batch > n:
            order, position = rng.permutation(n), 0
        subset = None if batch == n else order[position:position + batch]
        position += batch
        loss, grad = objective.fun_and_jac(x, subset)
        x, state = opt.step(grad, state, x)
        stop = record(step, loss)
        if checkpoint and (step % checkpoint_every == 0 or stop or step == max_iter):
            save(step)
        if stop:
            message = "time limit reached"
            break
    x = opt.eval_params(state, x)
    return OptimizationResult(x=x, fun=objective.fun_and_jac(x)[0], nit=len(history), nfev=objective.n_evaluations,
                              success=True, message=message, history=history, wall_time=time.perf_counter() - start)
