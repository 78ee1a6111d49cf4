"""Checkpoints of a mini-batch run: θ, optimizer state, RNG state, position and history, written atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..optim.state import flatten_state, unflatten_state

__all__ = ["save_checkpoint", "load_checkpoint", "cached_results", "set_file_writer", "writes_files"]

_writer = {"enabled": True}


def set_file_writer(enabled: bool) -> None:
    """Whether this process writes checkpoints (True by default). Under MPI only rank 0 writes; the other ranks
    still read rank 0's checkpoints, so a resumed run resumes on every rank."""
    _writer["enabled"] = bool(enabled)


def writes_files() -> bool:
    """See :func:`set_file_writer`."""
    return _writer["enabled"]


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
    if not writes_files():
        return
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


def cached_results(folder: str | Path, names, settings: dict, compute, progress=None) -> dict:
    """``compute(name)`` for each name, each result (a JSON-serialisable value) checkpointed as
    ``folder/{name}.json`` together with ``settings``: a rerun with equal settings reuses the finished names, so
    an interrupted study resumes and names can be added later; other settings recompute.

    Parameters
    ----------
    folder : path
        Created if absent.
    names : iterable of str
        Valid file stems.
    settings : dict
        JSON-serialisable; compared after a JSON round trip.
    compute : callable
        ``compute(name) -> result``.
    progress : callable, optional
        Told which names are reused.

    Returns
    -------
    dict
        name → result, in the order of ``names``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = json.loads(json.dumps(settings))
    results = {}
    for name in names:
        path = folder / f"{name}.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if saved["settings"] == settings:
                if progress:
                    progress(f"{name}: reusing {path}")
                results[name] = saved["result"]
                continue
        results[name] = compute(name)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"settings": settings, "result": results[name]}))
        os.replace(tmp, path)
    return results
