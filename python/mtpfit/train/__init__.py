"""Training loops."""
from .initial import fit_species_energies
from .output import write_run
from .scipy_trainer import SCIPY_METHODS, TrainingRun, train_scipy

__all__ = ["TrainingRun", "train_scipy", "SCIPY_METHODS", "fit_species_energies", "write_run"]
