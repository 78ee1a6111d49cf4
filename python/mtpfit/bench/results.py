"""Campaign result files: written atomically with a checksum, validated whenever they are read.

A result file is the JSON record of one run (:func:`~mtpfit.bench.runner.execute`): ``spec``, ``result``,
``history``, ``machine``, optionally ``curve`` (the time-to-accuracy points, [s, eV/atom, eV/Å], of a run with
``validate_seconds``) and ``checksum``, the SHA-256 of the record's canonical JSON without that key. Its name is
the first 20 hex digits of the hash of its ``spec``. A file that cannot be parsed (truncated by a kill), lacks a
key, has a value of the wrong type or a non-finite number where a number is required, a history whose length is
not the iteration count, a checksum that does not match, or a name that is not its spec's hash is *damaged*:
:func:`read_result` raises :class:`ResultFileError` naming it; ``mtpfit bench`` runs it again and ``mtpfit report``
leaves it out, each with a :class:`DamagedResultWarning` naming the file.

Files written before checksums existed (no ``checksum`` key) are checked for everything else.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path

from ..io.errors import FormatError

__all__ = ["ResultFileError", "DamagedResultWarning", "spec_hash", "result_name", "RESULT_NAME", "checksum",
           "check_record", "read_result", "write_result"]

#: Names of result files: the first 20 hex digits of their spec's hash.
RESULT_NAME = re.compile(r"[0-9a-f]{20}\.json")


class ResultFileError(FormatError):
    """A damaged campaign result file (the message starts with its path)."""


class DamagedResultWarning(UserWarning):
    """A result file was found damaged: it is run again (``bench``) or left out (``report``, ``--list``)."""


def spec_hash(spec: dict) -> str:
    """SHA-256 of the canonical JSON of a run specification (its result file's name)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def result_name(spec: dict) -> str:
    """The file name of a run's result."""
    return f"{spec_hash(spec)[:20]}.json"


def checksum(record: dict) -> str:
    """SHA-256 of the canonical JSON of ``record`` without its ``checksum`` key.

    Raises
    ------
    ValueError
        If the record holds NaN or infinity (which no written record does).
    """
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _metrics(v) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and (m is None or _number(m)) for k, m in v.items())


def _named(v) -> bool:
    return isinstance(v, dict) and isinstance(v.get("name"), str)


_TOP = ("spec", "result", "history", "machine")
# key: (required, check, what the value must be)
_SPEC = {"campaign": (True, lambda v: isinstance(v, str), "a string"),
         "dataset": (True, _named, "a table with a name"),
         "model": (True, _named, "a table with a name"),
         "optimizer": (True, _named, "a table with a name"),
         "loss": (True, lambda v: isinstance(v, dict), "a table"),
         "seed": (True, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
         "threads": (True, _count, "an integer ≥ 0")}
_RESULT = {"wall_time_s": (True, lambda v: _number(v) and v >= 0, "a finite number ≥ 0"),
           "passes": (True, lambda v: v is None or _number(v) and v >= 0, "a finite number ≥ 0 or null"),
           "nit": (True, lambda v: v is None or _count(v), "an integer ≥ 0 or null"),
           "final_loss": (True, lambda v: v is None or _number(v), "a finite number or null"),
           "success": (True, lambda v: isinstance(v, bool), "true or false"),
           "message": (True, lambda v: isinstance(v, str), "a string"),
           "errors": (True, lambda v: isinstance(v, dict) and set(v) == {"train", "validation"}
                      and all(_metrics(m) for m in v.values()),
                      "train and validation tables of finite numbers or nulls"),
           "diverged": (False, lambda v: isinstance(v, bool), "true or false"),
           "start": (False, lambda v: isinstance(v, str), "a string"),
           "start_s": (False, lambda v: _number(v) and v >= 0, "a finite number ≥ 0"),
           "passes_summary": (False, lambda v: isinstance(v, str), "a string")}


def _check_table(table, schema: dict, where: str) -> str | None:
    if not isinstance(table, dict):
        return f"{where} is not a table"
    for key, (required, valid, what) in schema.items():
        if key not in table:
            if required:
                return f"{where} has no {key!r}"
        elif not valid(table[key]):
            return f"{where}.{key} is {json.dumps(table[key])[:60]}, not {what}"
    return None


def _problem(record, name: str) -> str | None:
    """What is wrong with a record that is to be, or was, the file ``name``; None if nothing."""
    if not isinstance(record, dict):
        return "not a JSON object"
    missing = [key for key in _TOP if key not in record]
    if missing:
        return f"missing key(s) {', '.join(map(repr, missing))}"
    # strict: a file whose "checksum" key was damaged must not pass for one written before checksums
    unknown = sorted(set(record) - set(_TOP) - {"checksum", "curve"})
    if unknown:
        return f"unknown key(s) {', '.join(map(repr, unknown))}"
    problem = _check_table(record["spec"], _SPEC, "spec") or _check_table(record["result"], _RESULT, "result")
    if problem:
        return problem
    result, history = record["result"], record["history"]
    if not isinstance(history, list) or not all(_number(v) for v in history):
        return "history is not a list of finite numbers"
    if not isinstance(record["machine"], dict):
        return "machine is not a table"
    curve = record.get("curve", [])
    if not isinstance(curve, list) or not all(
            isinstance(p, list) and len(p) == 3 and _number(p[0]) and p[0] >= 0
            and all(v is None or _number(v) for v in p[1:]) for p in curve):
        return "curve is not a list of [seconds ≥ 0, EPA RMSE or null, force RMSE or null]"
    # every trainer records one history entry per iteration or step; a diverged run records none
    if len(history) != (result["nit"] or 0):
        return f"history has {len(history)} entries for {result['nit']} iterations"
    if (result["nit"] is None or result["final_loss"] is None) and not result.get("diverged", False):
        return "no iteration count or final loss, yet the run did not diverge"
    if name != result_name(record["spec"]):
        return f"its spec belongs to the result file {result_name(record['spec'])}"
    return None


def check_record(record: dict, path: str | os.PathLike) -> None:
    """Check a run's record against the result-file schema (everything but the checksum).

    Raises
    ------
    ResultFileError
        Naming ``path`` and the first problem found.
    """
    problem = _problem(record, Path(path).name)
    if problem:
        raise ResultFileError(path, problem)


def read_result(path: str | os.PathLike) -> dict:
    """Read and validate a result file.

    Returns
    -------
    dict
        The record, with its ``checksum``.

    Raises
    ------
    ResultFileError
        The file cannot be read or parsed, fails the schema, or its checksum does not match.
    """
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ResultFileError(path, f"not a readable JSON result ({type(err).__name__}: {err})") from None
    check_record(record, path)
    if "checksum" in record:
        try:
            expected = checksum(record)
        except ValueError:
            raise ResultFileError(path, "holds NaN or infinity") from None
        if record["checksum"] != expected:
            raise ResultFileError(path, "checksum mismatch: the file was changed after it was written")
    return record


def write_result(path: str | os.PathLike, record: dict) -> Path:
    """Write a run's record with its checksum, atomically: a temporary file in the same folder, flushed to disk,
    then renamed over ``path``, so a reader (or a kill at any moment) sees the old file or the new one, whole.

    Raises
    ------
    ResultFileError
        If the record fails the schema (nothing is written: a file that would be read as damaged would make
        every ``bench`` run the run again).
    """
    path = Path(path)
    check_record(record, path)
    text = json.dumps({**record, "checksum": checksum(record)}, indent=1, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # the rename itself reaches the disk only with its folder
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path
