"""mtpfit: train Moment Tensor Potentials with a fast C++ core and compare optimizers.

Data flow: :mod:`mtpfit.io` → :mod:`mtpfit.data` → :mod:`mtpfit.potential` → :mod:`mtpfit.objective`
→ :mod:`mtpfit.train`.
"""
from .data import Configuration, Dataset
from .objective import Loss, Objective
from .potential import MTP

__version__ = "0.1.0"

__all__ = ["Configuration", "Dataset", "MTP", "Loss", "Objective", "MTPCalculator", "fit", "TrainingConfig",
           "__version__"]


def __getattr__(name):
    # the calculator pulls in ASE's calculator machinery, fit the trainers (scipy.optimize): load them on first use
    if name == "MTPCalculator":
        from .calculator import MTPCalculator

        return MTPCalculator
    if name in ("fit", "TrainingConfig"):
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module 'mtpfit' has no attribute {name!r}")
