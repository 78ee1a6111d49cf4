"""Optimizer states to and from flat arrays, for checkpoints (``numpy.savez``)."""
from __future__ import annotations

import numpy as np

__all__ = ["flatten_state", "unflatten_state"]


def flatten_state(state: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """{'a/b': array} for a nested dict of arrays and numbers (numbers become 0-d arrays)."""
    out = {}
    for key, value in state.items():
        if "/" in key:
            raise ValueError(f"state key {key!r} contains '/'")
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_state(value, path + "/"))
            if not value:
                out[path + "/"] = np.zeros(0)  # keeps an empty sub-state
        else:
            out[path] = np.asarray(value)
    return out


def unflatten_state(flat: dict[str, np.ndarray]) -> dict:
    """Inverse of :func:`flatten_state`; 0-d arrays come back as Python int or float."""
    out: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        if leaf == "":
            continue
        value = np.asarray(value)
        node[leaf] = value.item() if value.ndim == 0 else value.copy()
    return out
