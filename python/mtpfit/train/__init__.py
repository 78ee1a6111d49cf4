"""Training loops."""
from .initial import STARTS, UnderdeterminedSpeciesWarning, fit_species_energies, starting_point
from .output import passes_summary, write_run
from .scipy_trainer import SCIPY_METHODS, TrainingRun
from .full_batch import FULL_BATCH_METHODS, train_full_batch, train_scipy
from .config import TrainingConfig
from .fit import fit

__all__ = ["TrainingRun", "train_scipy", "SCIPY_METHODS", "FULL_BATCH_METHODS", "train_full_batch",
           "fit_species_energies", "starting_point", "STARTS", "write_run", "passes_summary",
           "TrainingConfig", "fit", "UnderdeterminedSpeciesWarning"]
