"""The potentials: the Moment Tensor Potential (basis, parameters, ``.mtp`` files) and the ETN tensor network."""
from .basis import MTPBasis
from .etn import ETN
from .mtp import LEVELS, MTP, Prediction
from .mtp_file import read_mtp, write_mtp
from .reader import read_potential

__all__ = ["MTP", "MTPBasis", "ETN", "Prediction", "LEVELS", "read_mtp", "write_mtp", "read_potential"]
