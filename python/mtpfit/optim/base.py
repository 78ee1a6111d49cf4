"""The optimizer protocol: small gradient transformations with explicit state, composed into optimizers.

Modelled on optax: a :class:`Transform` is a pair of pure functions ``init(params, blocks) -> state`` and
``update(updates, state, params) -> (updates, state)``; an :class:`Optimizer` is a transform whose output is
the step added to θ, plus the point at which θ is reported. States are dicts of numpy arrays and numbers,
so they serialise (:mod:`mtpfit.optim.state`) and a run can be resumed exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from .blocks import ParameterBlocks

__all__ = ["Transform", "Optimizer", "chain", "identity_eval"]

State = dict


class Transform(NamedTuple):
    """A gradient transformation: ``init(params, blocks) -> state``;
    ``update(updates, state, params) -> (new_updates, new_state)``. Functions never modify their inputs."""

    init: Callable[[np.ndarray, ParameterBlocks], State]
    update: Callable[[np.ndarray, State, np.ndarray], tuple[np.ndarray, State]]


def identity_eval(state: State, params: np.ndarray) -> np.ndarray:
    """Report θ where the gradients are taken."""
    return params


@dataclass(frozen=True)
class Optimizer:
    """A complete optimizer: θ ← θ + update(∇L(θ)).

    Parameters
    ----------
    name : str
    transform : Transform
        Its output is the step added to θ (negative learning rate included).
    eval_params : callable
        ``(state, params) -> θ`` at which to evaluate, report and checkpoint (the averaged x of
        Schedule-Free, the slow weights of Lookahead); θ itself for the others.
    """

    name: str
    transform: Transform
    eval_params: Callable[[State, np.ndarray], np.ndarray] = identity_eval

    def init(self, params: np.ndarray, blocks: ParameterBlocks) -> State:
        """Initial state for θ = ``params``."""
        return self.transform.init(np.asarray(params, dtype=float), blocks)

    def step(self, grad: np.ndarray, state: State, params: np.ndarray) -> tuple[np.ndarray, State]:
        """One step: returns (new θ, new state) given ∇L at ``params``.

        Raises
        ------
        FloatingPointError
            If the step is not finite (the message names the optimizer).
        """
        updates, state = self.transform.update(np.asarray(grad, dtype=float), state, params)
        if not np.all(np.isfinite(updates)):
            raise FloatingPointError(f"{self.name}: the step contains NaN or infinity")
        return params + updates, state


def chain(*transforms: Transform) -> Transform:
    """Apply transforms in sequence; the state is the list of their states (as a dict keyed '0', '1', …)."""

    def init(params, blocks):
        return {str(k): t.init(params, blocks) for k, t in enumerate(transforms)}

    def update(updates, state, params):
        new_state = {}
        for k, t in enumerate(transforms):
            updates, new_state[str(k)] = t.update(updates, state[str(k)], params)
        return updates, new_state

    return Transform(init, update)
