"""The optimizer zoo: optax-style transformations with explicit state over the flat θ and its named blocks.

``make_optimizer(name, **hyperparameters)`` builds any of :data:`OPTIMIZERS`; an optimizer is ``init`` /
``step`` with a serialisable state, and reports θ at ``eval_params``.
"""
from .base import Optimizer, Transform, chain
from .blocks import ParameterBlocks
from .result import OptimizationResult
from .schedules import make_schedule
from .varpro import varpro
from .zoo import OPTIMIZERS, make_optimizer

__all__ = ["Optimizer", "Transform", "chain", "ParameterBlocks", "OptimizationResult", "make_schedule",
           "OPTIMIZERS", "make_optimizer", "varpro"]
