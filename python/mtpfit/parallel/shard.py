"""Splitting a dataset over ranks so that each does about the same work."""
from __future__ import annotations

import heapq

import numpy as np

from ..data.dataset import Dataset

__all__ = ["configuration_costs", "balanced_shards"]


def configuration_costs(dataset: Dataset, cutoff: float) -> np.ndarray:
    """Estimated cost of each configuration, atoms × neighbours per atom, shape (K,).

    Neighbours per atom are estimated from the number density inside the cutoff sphere, N/V·(4/3)πr_c³, capped
    at N − 1 for molecules and cells without a volume (no neighbour list is built: every rank computes this for
    the whole dataset before loading its shard).
    """
    sphere = 4.0 / 3.0 * np.pi * cutoff ** 3
    costs = np.empty(len(dataset))
    for k, c in enumerate(dataset):
        neighbours = float(max(c.n_atoms - 1, 1))
        if c.cell is not None and np.all(c.pbc):
            volume = abs(float(np.linalg.det(c.cell)))
            if volume > 0:
                neighbours = c.n_atoms / volume * sphere
        costs[k] = c.n_atoms * neighbours
    return costs


def balanced_shards(costs: np.ndarray, n_shards: int) -> list[np.ndarray]:
    """Longest-processing-time assignment: configurations in decreasing cost (ties by index) go to the least
    loaded shard (ties by shard number). Deterministic; the heaviest shard is within 4/3 of the optimum (Graham
    1969).

    Returns
    -------
    list of ndarray of int
        Per shard, its configuration indices in increasing order. A shard may be empty when there are fewer
        configurations than shards.
    """
    if n_shards < 1:
        raise ValueError(f"need at least one shard, got {n_shards}")
    order = sorted(range(len(costs)), key=lambda k: (-costs[k], k))
    heap = [(0.0, s) for s in range(n_shards)]
    members: list[list[int]] = [[] for _ in range(n_shards)]
    for k in order:
        load, s = heapq.heappop(heap)
        members[s].append(k)
        heapq.heappush(heap, (load + float(costs[k]), s))
    return [np.array(sorted(m), dtype=np.int64) for m in members]
