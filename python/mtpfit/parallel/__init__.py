"""Data parallelism over MPI ranks: the communicator and the sharding of a dataset."""
from .comm import MPICommunicator, SerialCommunicator, world
from .shard import balanced_shards, configuration_costs

__all__ = ["MPICommunicator", "SerialCommunicator", "balanced_shards", "configuration_costs", "world"]
