"""Checkpoints of training runs: θ, optimizer state and run position (history, RNG state, …) in one ``.npz``,
written atomically and validated on read (schema, checksum, finite values)."""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..optim.state import join_state, split_state

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError", "check_position", "write_atomically",
           "write_text_atomically", "cached_results", "set_file_writer", "writes_files"]

#: Written into every checkpoint; a file with another schema is refused.
SCHEMA = "mtpfit-checkpoint/1"

_writer = {"enabled": True}


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: unreadable, damaged, of another run or beyond this run's budget.
    The message names the file."""


def set_file_writer(enabled: bool) -> None:
    """Whether this process writes checkpoints (True by default). Under MPI only rank 0 writes; the other ranks
    still read rank 0's checkpoints, so a resumed run resumes on every rank."""
    _writer["enabled"] = bool(enabled)


def writes_files() -> bool:
    """See :func:`set_file_writer`."""
    return _writer["enabled"]


def save_checkpoint(path: str | Path, params: np.ndarray, state: dict, meta: dict) -> None:
    """Write ``path`` (an ``.npz``) atomically: a crash or ``kill -9`` mid-write leaves the previous checkpoint
    intact.

    Parameters
    ----------
    params : ndarray, shape (n_params,)
        θ of the optimizer (where the next gradient is taken).
    state : dict
        Optimizer state: nested dicts of arrays (stored bit for bit) and JSON-serialisable values.
    meta : dict
        JSON-serialisable run position (step, epoch, RNG state, history, …).
    """
    if not writes_files():
        return
    path = Path(path)
    arrays, tree = split_state(state)
    arrays = {f"state/{k}": v for k, v in arrays.items()}
    arrays["params"] = np.asarray(params, dtype=float)
    arrays["meta"] = np.frombuffer(json.dumps({"schema": SCHEMA, "meta": meta, "state": tree}).encode(),
                                   dtype=np.uint8)
    arrays["checksum"] = np.frombuffer(_checksum(arrays).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[np.ndarray, dict, dict]:
    """(params, optimizer state, meta) from :func:`save_checkpoint`, validated.

    Raises
    ------
    CheckpointError
        Naming the file, if it is unreadable or truncated, not an mtpfit checkpoint of this schema, its checksum
        does not match, or θ or a floating-point state array is not finite.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated or not an .npz: {err})") from err
    missing = {"params", "meta", "checksum"} - set(arrays)
    if missing:
        raise CheckpointError(f"{path}: not an mtpfit checkpoint (no {', '.join(sorted(missing))})")
    stored = bytes(arrays.pop("checksum")).decode(errors="replace")
    if stored != _checksum(arrays):
        raise CheckpointError(f"{path}: checksum mismatch (the file is damaged)")
    try:
        document = json.loads(bytes(arrays.pop("meta")).decode())
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable run information ({err})") from err
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else None
        raise CheckpointError(f"{path}: schema {found!r}, expected {SCHEMA!r}")
    params = arrays.pop("params")
    if params.ndim != 1 or params.dtype != np.float64:
        raise CheckpointError(f"{path}: θ has shape {params.shape} and dtype {params.dtype}, expected a float64 "
                              "vector")
    for name, value in {"θ": params, **arrays}.items():
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise CheckpointError(f"{path}: {name} holds NaN or infinity")
    state = join_state({k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")},
                       document.get("state") or {})
    return params, state, document.get("meta") or {}


def write_atomically(mtp, path: str | Path) -> None:
    """``mtp.write(path)`` (an :class:`~mtpfit.MTP`) through a temporary file, so a kill leaves the previous file
    whole; only where :func:`writes_files`."""
    if not writes_files():
        return
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    mtp.write(tmp)
    os.replace(tmp, path)


def write_text_atomically(path: str | Path, text: str) -> None:
    """``path.write_text(text)`` through a temporary file; only where :func:`writes_files`."""
    if not writes_files():
        return
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def check_position(path: str | Path, done, history: list, budget: int | None, unit: str, option: str) -> None:
    """Refuse a checkpoint whose position does not fit: ``done`` iterations (steps) must equal the number of
    history rows and, when ``budget`` is given, not exceed it.

    Raises
    ------
    CheckpointError
        Naming the file and, for a position past the budget, the setting (``option``) that limits it.
    """
    if not isinstance(done, int) or isinstance(done, bool) or done < 0:
        raise CheckpointError(f"{path}: invalid {unit} count {done!r}")
    if len(history) != done:
        raise CheckpointError(f"{path}: at {unit} {done} but with {len(history)} history rows (inconsistent)")
    if budget is not None and done > budget:
        raise CheckpointError(f"{path}: the run is already at {unit} {done}, beyond the {budget} {unit}s of {option}; "
                              f"nothing would be trained: resume with a larger {option} or start a new run")


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


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
