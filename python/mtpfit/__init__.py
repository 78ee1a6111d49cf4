"""mtpfit: train Moment Tensor Potentials with a fast C++ core and compare optimizers.

Data flow: :mod:`mtpfit.io` → :mod:`mtpfit.data` → :mod:`mtpfit.potential` → :mod:`mtpfit.objective`
→ :mod:`mtpfit.train`.
"""
from .data import Configuration, Dataset
from .objective import Loss, Objective
from .potential import ETN, MTP

__version__ = "0.1.0"

__all__ = ["Configuration", "Dataset", "MTP", "ETN", "Loss", "Objective", "MTPCalculator", "PotentialCalculator",
           "fit", "TrainingConfig", "__version__"]


def __getattr__(name):
    # the calculator pulls in ASE's calculator machinery, fit the trainers (scipy.optimize): load them on first use
    if name in ("MTPCalculator", "PotentialCalculator"):
        from . import calculator

        return getattr(calculator, name)
    if name in ("fit", "TrainingConfig"):
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module 'mtpfit' has no attribute {name!r}")
