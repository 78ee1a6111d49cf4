"""The communicator the data-parallel objective sums through: MPI (mpi4py) under an MPI launcher, a serial
stand-in with the same interface otherwise."""
from __future__ import annotations

import os

import numpy as np

__all__ = ["SerialCommunicator", "MPICommunicator", "world"]

# Variables the common launchers (MPICH/Hydra, Intel MPI, Open MPI, MVAPICH, Slurm's PMI) set in every rank.
_LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK")


class SerialCommunicator:
    """One process: rank 0 of 1; every collective is the identity.

    Attributes
    ----------
    n_allreduce : int
        Collective sums made (the same count an MPI run would make).
    bytes_reduced : int
        Bytes those sums carried per rank.
    """

    rank = 0
    size = 1

    def __init__(self):
        self.n_allreduce = 0
        self.bytes_reduced = 0

    def allreduce(self, buffer: np.ndarray) -> np.ndarray:
        """The sum of ``buffer`` (float64) over ranks: here a copy."""
        buffer = np.ascontiguousarray(buffer, dtype=float)
        self.n_allreduce += 1
        self.bytes_reduced += buffer.nbytes
        return buffer.copy()

    def allgather(self, value) -> list:
        """Every rank's ``value``, in rank order."""
        return [value]

    def bcast(self, value):
        """Rank 0's ``value`` on every rank."""
        return value


class MPICommunicator(SerialCommunicator):
    """Collectives over an mpi4py communicator (default ``MPI.COMM_WORLD``)."""

    def __init__(self, comm=None):
        super().__init__()
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def allreduce(self, buffer: np.ndarray) -> np.ndarray:
        buffer = np.ascontiguousarray(buffer, dtype=float)
        out = np.empty_like(buffer)
        self.comm.Allreduce(buffer, out, op=self._mpi.SUM)
        self.n_allreduce += 1
        self.bytes_reduced += buffer.nbytes
        return out

    def allgather(self, value) -> list:
        return self.comm.allgather(value)

    def bcast(self, value):
        return self.comm.bcast(value, root=0)


def world() -> SerialCommunicator:
    """``MPI.COMM_WORLD`` when this process was started by an MPI launcher with more than one rank and mpi4py is
    installed; the serial stand-in otherwise (mpi4py is not even imported, so a plain run needs no MPI).

    Raises
    ------
    ImportError
        Launched by an MPI launcher with several ranks but mpi4py is missing (``pip install mtpfit[mpi]``).
    """
    if not any(os.environ.get(v) for v in _LAUNCHER_VARIABLES):
        return SerialCommunicator()
    try:
        comm = MPICommunicator()
    except ImportError as err:
        raise ImportError("started under an MPI launcher but mpi4py is not installed: pip install 'mtpfit[mpi]' "
                          "(or mpi4py built against the system MPI)") from err
    return comm if comm.size > 1 else SerialCommunicator()
