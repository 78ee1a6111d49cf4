"""Splitting a dataset over ranks so that each does about the same work."""
from __future__ import annotations

import heapq

import numpy as np

from ..data.dataset import Dataset
from ..data.neighbors import neighbor_pairs

__all__ = ["configuration_costs", "balanced_shards"]


def configuration_costs(dataset: Dataset, cutoff: float) -> np.ndarray:
    """Cost of each configuration: its number of (atom, neighbour) pairs within ``cutoff`` (Å), which the
    per-neighbour loops of a loss+gradient pass are proportional to; shape (K,).

    Every rank computes this for the whole dataset before loading its shard: one neighbour list per configuration
    (vesin), discarded at once.
    """
    return np.array([max(len(neighbor_pairs(c, cutoff)[0]), c.n_atoms) for c in dataset], dtype=float)


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
