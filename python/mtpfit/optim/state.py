"""Optimizer states to and from flat arrays and JSON, for checkpoints (``numpy.savez``), and the error a resumed
trainer raises when a saved state does not fit the run."""
from __future__ import annotations

import numpy as np

__all__ = ["flatten_state", "unflatten_state", "split_state", "join_state", "ResumeError", "check_resume"]


class ResumeError(ValueError):
    """A saved trainer state that the run cannot continue from (beyond its iteration budget, wrong shapes or
    missing entries)."""


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


def split_state(state: dict, prefix: str = "") -> tuple[dict[str, np.ndarray], dict]:
    """A nested state as (arrays by path 'a/b', the rest as a JSON-serialisable tree).

    Arrays keep their dtype and bits; numbers, strings, None, lists and dicts without arrays go to the tree (a
    Python float survives JSON exactly). numpy scalars become Python ones.

    Raises
    ------
    ValueError
        For a key containing '/' or a value that is neither.
    """
    arrays: dict[str, np.ndarray] = {}
    tree: dict = {}
    for key, value in state.items():
        if not isinstance(key, str) or "/" in key:
            raise ValueError(f"state key {key!r} is not a string without '/'")
        path = f"{prefix}{key}"
        if isinstance(value, np.ndarray):
            arrays[path] = value
        elif isinstance(value, dict):
            sub_arrays, tree[key] = split_state(value, path + "/")
            arrays.update(sub_arrays)
        else:
            tree[key] = _plain(value, path)
    return arrays, tree


def join_state(arrays: dict[str, np.ndarray], tree: dict) -> dict:
    """Inverse of :func:`split_state` (arrays are copied)."""
    out = _copy_tree(tree)
    for path, value in arrays.items():
        *parents, leaf = path.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.array(value)
    return out


def check_resume(state: dict, shapes: dict[str, tuple], what: str) -> None:
    """Raise :class:`ResumeError` unless ``state`` has an array of each shape in ``shapes`` (by key).

    Parameters
    ----------
    state : dict
    shapes : dict
        Key → expected shape; ``None`` for a key that must be present with any value.
    what : str
        Names the state in the message (e.g. "LM").
    """
    for key, shape in shapes.items():
        if key not in state:
            raise ResumeError(f"{what}: the saved state has no {key!r}")
        if shape is not None and np.shape(state[key]) != shape:
            raise ResumeError(f"{what}: saved {key!r} has shape {np.shape(state[key])}, expected {shape}")


def _plain(value, path):
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{path}[{k}]") for k, v in enumerate(value)]
    if isinstance(value, dict):  # inside a list (history rows): no arrays there
        return {str(k): _plain(v, f"{path}.{k}") for k, v in value.items()}
    raise ValueError(f"state entry {path!r} of type {type(value).__name__} cannot be checkpointed")


def _copy_tree(tree):
    if isinstance(tree, dict):
        return {k: _copy_tree(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_copy_tree(v) for v in tree]
    return tree
