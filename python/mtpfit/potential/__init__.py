"""The Moment Tensor Potential: basis, parameters, ``.mtp`` files."""
from .basis import MTPBasis
from .mtp import LEVELS, MTP, Prediction
from .mtp_file import read_mtp, write_mtp

__all__ = ["MTP", "MTPBasis", "Prediction", "LEVELS", "read_mtp", "write_mtp"]
