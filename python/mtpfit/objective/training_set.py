"""Build the core's training-set representation once: neighbour geometry, labels, weights."""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from ..data.dataset import Dataset
from ..data.neighbors import ShortDistanceWarning, estimated_pairs
from .loss import Loss

__all__ = ["build_training_set", "residual_weights", "MAX_TRAINING_PAIRS"]

#: Largest training set loaded, in neighbour pairs summed over its configurations, estimated before any list is
#: built (:func:`~mtpfit.data.neighbors.estimated_pairs`): the core keeps ~29 bytes per pair (measured on mlearn
#: Mo), ~6 GB here, and building takes ~1 µs per pair. Read at every call; raise it for larger sets.
MAX_TRAINING_PAIRS = 2e8


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


def build_training_set(model, dataset: Dataset, loss: Loss, indices=None):
    """The :class:`mtpfit._core.TrainingSet` of ``dataset`` for the species and cutoff of ``model`` (an MTP or an
    ETN: the training set serves either).

    Neighbour lists are built here, once; every later loss evaluation reuses them. With ``indices`` only those
    configurations are loaded (a shard), with the weights they have in the whole dataset and their dataset
    index as their id, so that the shards of a dataset sum to its loss.

    Warns once, with a :class:`~mtpfit.data.neighbors.ShortDistanceWarning` that counts them and names the
    closest, when configurations have atoms closer than the potential's ``min_dist``.

    Raises
    ------
    ValueError
        Unknown species, overlapping atoms or a geometry the neighbour list refuses, naming the configuration;
        a set estimated at more than :data:`MAX_TRAINING_PAIRS` neighbour pairs, naming the dataset.
    """
    from .. import _core

    chosen = range(len(dataset)) if indices is None else indices
    pairs = [estimated_pairs(dataset[k], model.max_dist) for k in chosen]
    if not sum(pairs) <= MAX_TRAINING_PAIRS:
        largest = int(np.argmax(pairs))
        raise ValueError(f"{dataset.name}: at max_dist = {model.max_dist:g} Å its {len(pairs)} configurations "
                         f"would hold about {sum(pairs):.3g} neighbour pairs, more than MAX_TRAINING_PAIRS = "
                         f"{MAX_TRAINING_PAIRS:.3g} (~{29 * MAX_TRAINING_PAIRS / 1e9:.0f} GB; the largest, "
                         f"{dataset[chosen[largest]].source}, about {pairs[largest]:.3g}); lower max_dist, or raise "
                         "mtpfit.objective.training_set.MAX_TRAINING_PAIRS")
    ts = _core.TrainingSet()
    weights = residual_weights(dataset, loss)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ShortDistanceWarning)
        for k in chosen:
            config, w = dataset[k], weights[k]
            n = config.n_atoms
            ts.add(model.structure(config),
                   config.energy if config.energy is not None else 0.0, w.energy,
                   config.forces if config.forces is not None else np.zeros((n, 3)), w.forces,
                   config.plus_stress if config.plus_stress is not None else np.zeros((3, 3)), w.stress, int(k))
    short = [w for w in caught if issubclass(w.category, ShortDistanceWarning)]
    for other in caught:
        if other not in short:
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    if short:
        closest = min(short, key=lambda w: w.message.distance)
        warnings.warn(f"{len(short)} of {len(chosen)} configurations of "
                      f"{dataset.name} have atoms closer than the potential's min_dist = {model.min_dist:g} Å; "
                      f"the closest: {closest.message}", ShortDistanceWarning, stacklevel=3)
    return ts
