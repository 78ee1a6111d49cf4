"""Build the core's training-set representation once: neighbour geometry, labels, weights."""
from __future__ import annotations

import numpy as np

from ..data.dataset import Dataset
from ..potential.mtp import MTP
from .loss import Loss

__all__ = ["build_training_set"]


def build_training_set(mtp: MTP, dataset: Dataset, loss: Loss):
    """The :class:`mtpfit._core.TrainingSet` of ``dataset`` for ``mtp``'s species and cutoff.

    Neighbour lists are built here, once; every later loss evaluation reuses them.

    Raises
    ------
    ValueError
        Unknown species or overlapping atoms, naming the configuration.
    """
    from .. import _core

    ts = _core.TrainingSet()
    for config in dataset:
        w = loss.weights(config, len(dataset))
        n = config.n_atoms
        ts.add(mtp.structure(config),
               config.energy if config.energy is not None else 0.0, w.energy,
               config.forces if config.forces is not None else np.zeros((n, 3)), w.forces,
               config.plus_stress if config.plus_stress is not None else np.zeros((3, 3)), w.stress)
    return ts
