"""Configurations, datasets and neighbour lists."""
from .configuration import Configuration
from .dataset import Dataset

__all__ = ["Configuration", "Dataset"]
