"""Build the core's training-set representation once: neighbour geometry, labels, weights."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..data.dataset import Dataset
from ..potential.mtp import MTP
from .loss import Loss

__all__ = ["build_training_set", "residual_weights"]


def residual_weights(dataset: Dataset, loss: Loss) -> list:
    """The :class:`~mtpfit.objective.loss.ResidualWeights` of every configuration, as the loss uses them:
    :meth:`Loss.weights`, then partial force supervision (``loss.force_fraction < 1``) drops the force labels
    of the configurations not chosen and renormalises the force term over the kept components.

    For ``loss.kind == "file"`` these are the weights stored with each configuration (the study JSON's
    [energy, stress (6), forces (3N)]) times ``loss.energy``/``forces``/``stress`` (1 unless set), times 1/K
    with ``loss.average``; an off-diagonal Voigt stress weight is split in halves over its two symmetric
    entries of the 3×3 weight (the core sums all nine)."""
    weights = [loss.weights(config, len(dataset)) for config in dataset]
    if loss.force_fraction < 1.0:
        keep = loss.force_labelled(len(dataset))
        labelled = [np.count_nonzero(w.forces) for w in weights]
        kept = sum(n for n, k in zip(labelled, keep) if k)
        scale = sum(labelled) / kept if kept else 0.0
        weights = [replace(w, forces=w.forces * (scale if k else 0.0)) for w, k in zip(weights, keep)]
    return weights


def build_training_set(mtp: MTP, dataset: Dataset, loss: Loss, indices=None):
    """The :class:`mtpfit._core.TrainingSet` of ``dataset`` for ``mtp``'s species and cutoff.

    Neighbour lists are built here, once; every later loss evaluation reuses them. With ``indices`` only those
    configurations are loaded (a shard), with the weights they have in the whole dataset and their dataset
    index as their id, so that the shards of a dataset sum to its loss.

    Raises
    ------
    ValueError
        Unknown species or overlapping atoms, naming the configuration.
    """
    from .. import _core

    ts = _core.TrainingSet()
    weights = residual_weights(dataset, loss)
    for k in range(len(dataset)) if indices is None else indices:
        config, w = dataset[k], weights[k]
        n = config.n_atoms
        ts.add(mtp.structure(config),
               config.energy if config.energy is not None else 0.0, w.energy,
               config.forces if config.forces is not None else np.zeros((n, 3)), w.forces,
               config.plus_stress if config.plus_stress is not None else np.zeros((3, 3)), w.stress, int(k))
    return ts
