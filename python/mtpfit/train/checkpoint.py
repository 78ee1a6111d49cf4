"""Checkpoints of a mini-batch run: θ, optimizer state, RNG state, position and history, written atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..optim.state import flatten_state, unflatten_state

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(path: str | Path, params: np.ndarray, state: dict, meta: dict) -> None:
    """Write ``path`` (an ``.npz``) atomically: a crash mid-write leaves the previous checkpoint intact.

    Parameters
    ----------
    params : ndarray
        θ of the optimizer (where the next gradient is taken).
    state : dict
        Optimizer state.
    meta : dict
        JSON-serialisable run position (step, epoch, RNG state, history, …).
    """
    path = Path(path)
    arrays = {f"state/{k}": v for k, v in flatten_state(state).items()}
    arrays["params"] = params
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[np.ndarray, dict, dict]:
    """(params, optimizer state, meta) from :func:`save_checkpoint`.

    Raises
    ------
    ValueError
        If the file is not such a checkpoint (naming it).
    """
    try:
        with np.load(path) as data:
            params = data["params"].copy()
            meta = json.loads(bytes(data["meta"]).decode())
            state = unflatten_state({k[len("state/"):]: data[k] for k in data.files if k.startswith("state/")})
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(f"{path}: not an mtpfit checkpoint ({err})") from err
    return params, state, meta
