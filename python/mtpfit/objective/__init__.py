"""The training objective: loss settings, the fixed training-set representation, the scipy bridge."""
from .loss import Loss, ResidualWeights
from .objective import Objective, Predictions
from .training_set import build_training_set, residual_weights

__all__ = ["Loss", "ResidualWeights", "Objective", "Predictions", "build_training_set", "residual_weights"]
