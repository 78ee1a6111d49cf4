"""Fuzzing the readers and the TOML loaders with mutated real files (issue 14).

A case takes a real file (``tests/data``, the campaigns of ``benchmarks/campaigns``) and applies one mutation:
flipped bytes, a truncation, a deleted or duplicated line, two tokens swapped, one number replaced by an extreme
(1e300, -1e20, nan, inf, 2**31, 1.5, true, null, …), or, in JSON, one value replaced, one key deleted or one value
nested 5000 deep. The outcome must be

* a parsed object that passes validation: finite arrays of consistent shapes and known species; a basis within the
  ``.mtp`` limits with finite, bounded coefficients; options of the types the command line gives; or
* the documented error naming the file: ``FormatError`` for the readers, ``ValueError`` for the TOML loaders.

Any other exception fails, and so does a *silent acceptance*: a mutation that puts what the format forbids where it
forbids it (``true`` or ``null`` where a number goes, 1.5 for an integer, nan, an element that is no symbol, a count
or a line that no longer matches the rest) must be refused.

The generators are functions of a ``random.Random``. Here hypothesis drives them, derandomized, with
:data:`CASES_PER_FORMAT` cases per format; ``benchmarks/fuzz_readers.py`` runs the same generators for ≥ 10⁵
cases per format in subprocesses, counting crashes and hangs.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
from ase.data import chemical_symbols
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from mtpfit.bench import load_campaign
from mtpfit.cli import _parser, _with_config
from mtpfit.io import FormatError, read_ase, read_cfg, read_mlearn_json, read_study_json
from mtpfit.io.cfg import MAX_TYPE
from mtpfit.io.json_formats import KBAR_PER_EV_PER_A3
from mtpfit.potential import mtp_file
from mtpfit.potential.mtp import LEVELS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
FORMATS = ("cfg", "mtp", "mlearn-json", "study-json", "extxyz", "train-toml", "campaign-toml")
CASES_PER_FORMAT = 2000

# ----------------------------------------------------------------------------- what a number may become

EXTREMES = ("1e300", "-1e20", "nan", "inf", "2147483648", "1.5", "true", "null", "-1", "0", "1e400", "9" * 30)
ANY = frozenset(EXTREMES)                                   # where any change breaks the file (counts, sizes)
NOT_FINITE = frozenset({"nan", "inf", "true", "null", "1e400"})   # never a finite number (1e400 reads as inf)
NOT_INTEGER = NOT_FINITE | {"1e300", "-1e20", "1.5"}         # never an integer
INDEX = NOT_INTEGER | {"-1", "2147483648", "9" * 30}         # never a small non-negative integer
JSON_EXTREMES = (1e300, -1e20, math.nan, math.inf, 2**31, 1.5, True, False, None, "x", [], {}, -1, 0, 10**400)
NUMBER = re.compile(r"(?<![\w.+-])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")


class Seed(NamedTuple):
    """A real file and what its mutations must give."""

    name: str
    text: str
    #: (start, end, replacements that must be refused) of each number a mutation may replace
    numbers: tuple[tuple[int, int, frozenset], ...]
    #: per line: must a copy of it be refused?
    duplicate_refused: tuple[bool, ...]
    #: the JSON document and the paths of all its nodes (JSON formats)
    tree: object = None
    paths: tuple[tuple, ...] = ()


class Mutation(NamedTuple):
    data: bytes
    label: str         # what was done, where
    must_refuse: bool  # the format forbids the result
    kind: str          # the mutation class, for counts ("byte flip", "number → 1.5", ...)


# ----------------------------------------------------------------------------- seeds: .cfg

def _cfg_seed(name: str, text: str) -> Seed:
    """Numbers by role: Size counts, type and id integers, everything else a real (Feature values are text)."""
    bad = {"size": ANY, "type": INDEX, "id": NOT_INTEGER | {"9" * 30}}
    numbers, role, columns, offset = [], None, [], 0
    for line in text.split("\n"):
        tokens = list(re.finditer(r"\S+", line))
        head = tokens[0][0].rstrip(":") if tokens else ""
        if head in ("BEGIN_CFG", "END_CFG", "Size", "Supercell", "AtomData", "Energy", "PlusStress", "Feature"):
            role = {"Size": "size", "AtomData": "atoms"}.get(head, "real" if head in (
                "Supercell", "Energy", "PlusStress") else None)
            columns = [t[0] for t in tokens[1:]]
        elif role is not None:
            for j, token in enumerate(tokens):
                if NUMBER.fullmatch(token[0]):
                    kind = columns[j] if role == "atoms" else role
                    numbers.append((offset + token.start(), offset + token.end(), bad.get(kind, NOT_FINITE)))
        offset += len(line) + 1
    return Seed(name, text, tuple(numbers), tuple(bool(line.strip()) for line in text.split("\n")))


# ----------------------------------------------------------------------------- seeds: .mtp

_MTP_COUNTS = {"species_count", "radial_basis_size", "radial_funcs_count", "alpha_moments_count",
               "alpha_index_basic_count", "alpha_index_times_count", "alpha_scalar_moments"}


def _mtp_seed(name: str, text: str) -> Seed:
    """Counts: any change; indices: small non-negative integers (κ may be negative); reals: finite and within
    ±MAX_ABS_VALUE (cutoffs 0 ≤ min_dist < max_dist, scaling positive)."""
    values = dict(re.findall(r"^\s*(min_dist|max_dist)\s*=\s*(\S+)", text, re.MULTILINE))
    low, high = float(values["min_dist"]), float(values["max_dist"])
    out_of = {"min_dist": lambda v: not 0 <= v < high, "max_dist": lambda v: not low < v,
              "scaling": lambda v: not v > 0}
    reals = NOT_FINITE | {"1e300"}

    def real(key: str) -> frozenset:
        return reals | {e for e in EXTREMES if e not in NOT_FINITE and key in out_of and out_of[key](float(e))}

    numbers, offset = [], 0
    for line in text.split("\n"):
        body = line.split("<<<")[0]
        stripped = body.strip()
        if "=" in stripped:
            key = stripped.split("=")[0].strip()
            if key in _MTP_COUNTS:
                bad = ANY
            elif key.startswith("alpha_"):
                bad = None  # per column, below
            elif key in ("min_dist", "max_dist", "scaling", "species_coeffs", "moment_coeffs"):
                bad = real(key)
            else:  # version, potential_name, potential_tag, radial_basis_type: text
                bad = frozenset()
            for m in NUMBER.finditer(body, body.index("=")):
                column = body[body.rfind("{", 0, m.start()) + 1:m.start()].count(",")
                kappa = key == "alpha_index_times" and column == 2
                numbers.append((offset + m.start(), offset + m.end(),
                                bad if bad is not None else INDEX - {"-1"} if kappa else INDEX))
        elif re.fullmatch(r"\d+\s*-\s*\d+", stripped):  # a radial block a-b: any change repeats or leaves a pair
            numbers += [(offset + m.start(), offset + m.end(), ANY) for m in re.finditer(r"\d+", body)]
        elif stripped.startswith("{"):
            numbers += [(offset + m.start(), offset + m.end(), reals) for m in NUMBER.finditer(body)]
        offset += len(line) + 1
    duplicate = tuple(bool(s) and not s.startswith(("#", "<<<", "scaling")) and s != "radial_coeffs"
                      for s in (line.strip() for line in text.split("\n")))
    return Seed(name, text, tuple(numbers), duplicate)


# ----------------------------------------------------------------------------- seeds: JSON

def _paths(node, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for k, value in enumerate(node):
            out += _paths(value, prefix + (k,))
    return out


def _json_seed(name: str, entries: list) -> Seed:
    text = json.dumps(entries, indent=1)
    numbers = tuple((m.start(), m.end(), frozenset()) for m in NUMBER.finditer(text))
    return Seed(name, text, numbers, (False,) * len(text.split("\n")), entries, tuple(_paths(entries)))


def _study_entries(source: Path) -> list:
    """The configurations of a real .cfg file in the study's layout, with its documented weights."""
    entries = []
    for c in read_cfg(source):
        n = c.n_atoms
        stress = c.plus_stress / c.volume * KBAR_PER_EV_PER_A3
        entries.append({"sim": {"cfg": {"cell": c.cell.tolist(), "pos": c.positions.tolist(),
                                        "types": c.species.tolist()},
                                "energy": c.energy, "forces": c.forces.tolist(),
                                "stress": [stress[i, j] for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))]},
                        "weights": [1 / n] + [0.001 / n] * 3 + [0.002 / n] * 3 + [0.01] * 3 * n})
    return entries


def _finite(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _generic(path: tuple) -> tuple:
    """A path with its list indices as '#', the entry index dropped."""
    return tuple("#" if isinstance(k, int) else k for k in path[1:])


_MLEARN_NUMBERS = {("structure", "lattice", "matrix", "#", "#"), ("structure", "sites", "#", "xyz", "#"),
                   ("outputs", "forces", "#", "#"), ("outputs", "stress", "#"), ("outputs", "virial_stress", "#")}
_MLEARN_LABELS = {("outputs", "forces"), ("outputs", "stress"), ("outputs", "virial_stress")}
_MLEARN_REQUIRED = {("structure",), ("structure", "lattice"), ("structure", "lattice", "matrix"),
                    ("structure", "sites"), ("structure", "sites", "#", "xyz"), ("structure", "sites", "#", "species"),
                    ("structure", "sites", "#", "species", "#", "element")}
# nodes that no value of JSON_EXTREMES can replace: containers of data, elements, occupancies, num_atoms
_MLEARN_FIXED = _MLEARN_REQUIRED | {("structure", "lattice", "matrix", "#"), ("structure", "sites", "#"),
                                    ("structure", "sites", "#", "species", "#"), ("outputs", "forces", "#"),
                                    ("structure", "sites", "#", "species", "#", "occu"), ("num_atoms",)}


def _mlearn_refuses(path: tuple, value) -> bool:
    p = _generic(path)
    if len(path) < 2 or p in _MLEARN_FIXED:
        return True
    if p in _MLEARN_NUMBERS:
        return not _finite(value)
    if p == ("outputs", "energy"):
        return value is not None and not _finite(value)
    if p in _MLEARN_LABELS:  # null and [] mean "not labelled"
        return not (value is None or value == [])
    if p == ("outputs",):
        return not (value is None or value == {})
    return False  # metadata


_STUDY_NUMBERS = {("sim", "cfg", "cell", "#", "#"), ("sim", "cfg", "pos", "#", "#"), ("sim", "forces", "#", "#"),
                  ("sim", "stress", "#")}
_STUDY_REQUIRED = {("sim",), ("sim", "cfg"), ("sim", "cfg", "cell"), ("sim", "cfg", "pos"), ("sim", "cfg", "types")}
_STUDY_FIXED = _STUDY_REQUIRED | {("sim", "cfg", "cell", "#"), ("sim", "cfg", "pos", "#"), ("sim", "forces", "#")}


def _study_refuses(path: tuple, value) -> bool:
    p = _generic(path)
    if len(path) < 2 or p in _STUDY_FIXED:
        return True
    if p in _STUDY_NUMBERS:
        return not _finite(value)
    if p == ("weights", "#"):
        return not (_finite(value) and value >= 0)
    if p == ("sim", "cfg", "types", "#"):
        return not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TYPE)
    if p == ("sim", "energy"):
        return value is not None and not _finite(value)
    if p in {("sim", "forces"), ("sim", "stress"), ("weights",)}:
        return not (value is None or value == [])
    return False


_REFUSES = {"mlearn-json": (_mlearn_refuses, _MLEARN_REQUIRED), "study-json": (_study_refuses, _STUDY_REQUIRED)}


# ----------------------------------------------------------------------------- seeds: extxyz

def _xyz_seed(name: str, text: str) -> Seed:
    """The atom count: any change; positions, forces, the energy and the lattice: finite; Z: an atomic number."""
    lines = text.split("\n")
    properties = re.search(r"Properties=(\S+)", lines[1])[1].split(":")
    columns = [column for column, _, width in zip(*[iter(properties)] * 3) for _ in range(int(width))]
    bad = {"pos": NOT_FINITE, "force": NOT_FINITE, "Z": INDEX}
    numbers = [(m.start(), m.end(), ANY) for m in NUMBER.finditer(lines[0])]
    offset = len(lines[0]) + 1
    for m in NUMBER.finditer(lines[1]):
        key = re.findall(r"(\w+)=", lines[1][:m.start()])
        numbers.append((offset + m.start(), offset + m.end(),
                        NOT_FINITE if key and key[-1] in ("energy", "Lattice") else frozenset()))
    offset += len(lines[1]) + 1
    for line in lines[2:]:
        for j, token in enumerate(re.finditer(r"\S+", line)):
            if NUMBER.fullmatch(token[0]):
                numbers.append((offset + token.start(), offset + token.end(), bad.get(columns[j], frozenset())))
        offset += len(line) + 1
    return Seed(name, text, tuple(numbers), tuple(bool(line.strip()) for line in lines))


# ----------------------------------------------------------------------------- seeds: TOML

TRAIN_TOML = """\
optimizer = "adamw"
lr = 0.003
batch_size = 16
epochs = 2
level = 8
min_dist = 2.0
max_dist = 5.0
species = [0, 1, 2]
train = ["train.cfg"]
seed = 3
force_fraction = 0.5
max_seconds = 60.0
quiet = true
schedule = "cosine"

[schedule_options]
t_max = 20
"""
#: The types of the train config's options, as the command line gives them.
TRAIN_KINDS = {"optimizer": str, "lr": float, "batch_size": int, "epochs": int, "level": "level",
               "min_dist": float, "max_dist": float, "species": "species", "train": "paths", "seed": int,
               "force_fraction": float, "max_seconds": float, "quiet": bool, "schedule": str}
#: The types of a campaign optimizer's keys (the campaign module's docstring).
OPTIMIZER_KINDS = {"label": str, "name": str, "start": str, "species_fit": bool, "hyper": dict, "loss": dict,
                   "sweep": dict, "max_iter": int, "epochs": int, "batch_size": int, "patience": int,
                   "validate_every": int, "refine_iter": int, "init_interval": float, "max_seconds": float,
                   "refine_seconds": float}
_KIND_BAD = {int: NOT_INTEGER, float: NOT_FINITE, "level": ANY, "species": NOT_INTEGER}
_TOML_KEY = re.compile(r'(?:"([^"]*)"|([A-Za-z0-9_-]+))\s*=')


def _toml_code(text: str) -> list[bool]:
    """Per character: is it TOML code (not inside a string or a comment)?"""
    code, i = [False] * len(text), 0
    while i < len(text):
        if text.startswith(('"""', "'''"), i):
            end = text.find(text[i:i + 3], i + 3)
            i = len(text) if end < 0 else end + 3
        elif text[i] in "\"'":
            j = i + 1
            while j < len(text) and text[j] not in (text[i], "\n"):
                j += 2 if text[i] == '"' and text[j] == "\\" else 1
            i = j + 1
        elif text[i] == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        else:
            code[i] = True
            i += 1
    return code


def _toml_seed(name: str, text: str, role: Callable[[str, str, str], frozenset]) -> Seed:
    """Numbers outside strings and comments, with the replacements ``role(table, key, inner key)`` refuses;
    a copy of a line of code (not a comment, no multi-line string) is a repeated key or table."""
    code = _toml_code(text)
    numbers, duplicate, table, offset = [], [], "", 0
    for line in text.split("\n"):
        first = offset + len(line) - len(line.lstrip())
        in_code = bool(line.strip()) and first < len(code) and code[first]
        if in_code and line.lstrip().startswith("["):
            table = line.strip().strip("[]").strip()
        duplicate.append(in_code and '"""' not in line)
        for m in NUMBER.finditer(line):
            if all(code[offset + m.start():offset + m.end()]):
                keys = [a or b for a, b in _TOML_KEY.findall(line[:m.start()])]
                bad = role(table, keys[0], keys[-1]) if keys else role(table, "", "")
                numbers.append((offset + m.start(), offset + m.end(), bad))
        offset += len(line) + 1
    return Seed(name, text, tuple(numbers), tuple(duplicate))


def _train_role(table: str, key: str, inner: str) -> frozenset:
    if table == "" and key in TRAIN_KINDS:
        return _KIND_BAD.get(TRAIN_KINDS[key], frozenset({"null"}))
    return frozenset({"null"})  # TOML has no null


def _campaign_role(table: str, key: str, inner: str) -> frozenset:
    always = frozenset({"nan", "inf", "null", "1e400"})  # no NaN or infinity in a campaign, no null in TOML
    if table == "optimizers":
        kind = OPTIMIZER_KINDS.get(key if key == inner else inner if key == "sweep" else "")
        return always | _KIND_BAD.get(kind, frozenset())
    if table == "" and key in ("seeds", "threads_per_run"):
        return always | NOT_INTEGER | ({"0", "-1"} if key == "threads_per_run" else set())
    return always


@functools.cache
def seeds(fmt: str) -> tuple[Seed, ...]:
    """The real files each format's cases start from."""
    io = DATA / "io"
    if fmt == "cfg":
        return tuple(_cfg_seed(p.name, p.read_text()) for p in (io / "methane_1.cfg", io / "crystals_multi_3.cfg"))
    if fmt == "mtp":
        return tuple(_mtp_seed(p.parent.name, p.read_text()) for p in (
            DATA / "mlip2" / "level08_multi" / "pot.mtp", DATA / "mlip2" / "train_det_level06_multi20" / "init.mtp"))
    if fmt == "mlearn-json":
        return (_json_seed("MoNbTaW_2", json.loads((io / "MoNbTaW_2.json").read_text())),
                _json_seed("Mo_mlearn_3[2]", json.loads((io / "Mo_mlearn_3.json").read_text())[2:]))
    if fmt == "study-json":
        return (_json_seed("crystals_multi_3[0]", _study_entries(io / "crystals_multi_3.cfg")[:1]),)
    if fmt == "extxyz":
        lines = (io / "Mo_test_3.xyz").read_text().split("\n")
        return (_xyz_seed("Mo_test_3[0][:6]", "\n".join(["6", lines[1]] + lines[2:8]) + "\n"),)
    if fmt == "train-toml":
        return (_toml_seed("train", TRAIN_TOML, _train_role),)
    campaigns = ROOT / "benchmarks" / "campaigns"
    return tuple(_toml_seed(p.name, p.read_text(), _campaign_role)
                 for p in (campaigns / "2_agpd_init_interval.toml", campaigns / "3_agpd_minibatch.toml"))


# ----------------------------------------------------------------------------- mutators

def flip_bytes(seed: Seed, rng: random.Random) -> Mutation:
    data = bytearray(seed.text.encode())
    for _ in range(rng.randrange(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return Mutation(bytes(data), "byte flip", False, "byte flip")


def truncate(seed: Seed, rng: random.Random) -> Mutation:
    data = seed.text.encode()
    return Mutation(data[:rng.randrange(len(data))], "truncation", False, "truncation")


def delete_line(seed: Seed, rng: random.Random) -> Mutation:
    lines = seed.text.split("\n")
    k = rng.randrange(len(lines))
    return Mutation("\n".join(lines[:k] + lines[k + 1:]).encode(), f"line {k + 1} deleted", False, "line deleted")


def duplicate_line(seed: Seed, rng: random.Random) -> Mutation:
    lines = seed.text.split("\n")
    k = rng.randrange(len(lines))
    return Mutation("\n".join(lines[:k + 1] + lines[k:]).encode(), f"line {k + 1} duplicated",
                    seed.duplicate_refused[k], "line duplicated")


@functools.cache
def _token_spans(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(m.span() for m in re.finditer(r"\S+", text))


def swap_tokens(seed: Seed, rng: random.Random) -> Mutation:
    spans = _token_spans(seed.text)
    (a0, a1), (b0, b1) = sorted((rng.choice(spans), rng.choice(spans)))
    if a1 > b0:  # the same token twice
        return Mutation(seed.text.encode(), "no change", False, "tokens swapped")
    t = seed.text
    return Mutation((t[:a0] + t[b0:b1] + t[a1:b0] + t[a0:a1] + t[b1:]).encode(),
                    f"tokens {t[a0:a1][:20]!r} and {t[b0:b1][:20]!r} swapped", False, "tokens swapped")


def replace_number(seed: Seed, rng: random.Random) -> Mutation:
    start, end, bad = rng.choice(seed.numbers)
    old, new = seed.text[start:end], rng.choice(EXTREMES)
    line = seed.text.count("\n", 0, start) + 1
    return Mutation((seed.text[:start] + new + seed.text[end:]).encode(), f"line {line}: {old} → {new}",
                    new != old and new in bad, f"number → {new[:12]}")


def _set(tree, path: tuple, value):
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def replace_value(seed: Seed, rng: random.Random, fmt: str) -> Mutation:
    path, value = rng.choice(seed.paths[1:]), rng.choice(JSON_EXTREMES)
    tree = copy.deepcopy(seed.tree)
    _set(tree, path, value)
    return Mutation(json.dumps(tree, indent=1).encode(), f"{'/'.join(map(str, path))} → {json.dumps(value)[:20]}",
                    _REFUSES[fmt][0](path, value), f"value → {json.dumps(value)[:12]}")


def delete_key(seed: Seed, rng: random.Random, fmt: str) -> Mutation:
    path = rng.choice([p for p in seed.paths if p and isinstance(p[-1], str)])
    tree = copy.deepcopy(seed.tree)
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return Mutation(json.dumps(tree, indent=1).encode(), f"{'/'.join(map(str, path))} deleted",
                    _generic(path) in _REFUSES[fmt][1], "key deleted")


def nest_deeply(seed: Seed, rng: random.Random, fmt: str) -> Mutation:
    path = rng.choice(seed.paths)
    tree = copy.deepcopy(seed.tree)
    mark = "\u0000nest\u0000"
    if path:
        _set(tree, path, mark)
    text = json.dumps(mark if not path else tree, indent=1)
    return Mutation(text.replace(json.dumps(mark), "[" * 5000 + "0" + "]" * 5000).encode(),
                    f"{'/'.join(map(str, path))} nested 5000 deep", True, "nested 5000 deep")


_TEXT_MUTATORS = (flip_bytes, truncate, delete_line, duplicate_line, swap_tokens, replace_number, replace_number)
_JSON_MUTATORS = (replace_value, replace_value, delete_key, nest_deeply)


def mutate(fmt: str, rng: random.Random) -> Mutation:
    """One case of ``fmt``: a seed file and one mutation, both drawn from ``rng``."""
    seed = rng.choice(seeds(fmt))
    structured = fmt in _REFUSES
    mutator = rng.choice(_TEXT_MUTATORS + (_JSON_MUTATORS if structured else ()))
    mutation = mutator(seed, rng, fmt) if mutator in _JSON_MUTATORS else mutator(seed, rng)
    return mutation._replace(label=f"{seed.name}: {mutation.label}")


# ----------------------------------------------------------------------------- reading and validating

class _TrainConfig:
    """``mtpfit train --config FILE`` as far as the config file goes, on one parser whose defaults are reset after
    each case (``_with_config`` sets them; building a parser takes 7 ms)."""

    def __init__(self):
        self.parser = _parser()
        sub = next(a for a in self.parser._actions if isinstance(a, argparse._SubParsersAction))
        self.train = sub.choices["train"]
        self.defaults = {a.dest: a.default for a in self.train._actions}, dict(self.train._defaults)

    def __call__(self, path: Path) -> argparse.Namespace:
        try:
            return _with_config(self.parser, ["train", "--config", str(path)])
        finally:
            for action in self.train._actions:
                action.default = self.defaults[0][action.dest]
            self.train._defaults = dict(self.defaults[1])


def _arrays_problem(c, n: int) -> str | None:
    shapes = {"positions": (n, 3), "cell": (3, 3), "forces": (n, 3), "plus_stress": (3, 3)}
    for name, shape in shapes.items():
        value = getattr(c, name)
        if value is None and name != "positions":
            continue
        value = np.asarray(value)
        if value.shape != shape or value.dtype != float or not np.all(np.isfinite(value)):
            return f"{name}: shape {value.shape}, dtype {value.dtype}, finite {np.all(np.isfinite(value))}"
    if c.plus_stress is not None and not np.array_equal(c.plus_stress, c.plus_stress.T):
        return "plus_stress is not symmetric"
    if c.energy is not None and not (type(c.energy) is float and math.isfinite(c.energy)):
        return f"energy {c.energy!r}"
    if c.weights is not None:
        w = c.weights
        parts = (np.asarray(w["energy"]), np.asarray(w["stress"]), np.asarray(w["forces"]))
        if [p.shape for p in parts] != [(), (6,), (n, 3)] or not all(np.all(np.isfinite(p) & (p >= 0)) for p in parts):
            return "weights"
    return None


def _configurations_problem(configurations, species_ok: Callable[[object], bool]) -> str | None:
    if not isinstance(configurations, list) or not configurations:
        return "no configurations"
    for k, c in enumerate(configurations):
        n = len(c.positions)
        if n == 0 or np.shape(c.species) != (n,):
            return f"configuration {k}: {n} atoms, species shape {np.shape(c.species)}"
        bad = [s for s in c.species.tolist() if not species_ok(s)]
        if bad:
            return f"configuration {k}: unknown species {bad[:3]}"
        problem = _arrays_problem(c, n)
        if problem:
            return f"configuration {k}: {problem}"
    return None


def _type_ok(s) -> bool:
    return isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_TYPE


_ELEMENTS = frozenset(chemical_symbols[1:])


def _mtp_problem(result) -> str | None:
    basis, theta = result
    limits = {"species_count": mtp_file.MAX_SPECIES, "radial_funcs_count": mtp_file.MAX_RADIAL_FUNCS,
              "radial_basis_size": mtp_file.MAX_RADIAL_BASIS_SIZE, "alpha_moments_count": mtp_file.MAX_MOMENTS}
    for name, limit in limits.items():
        if not 1 <= getattr(basis, name) <= limit:
            return f"{name} = {getattr(basis, name)}"
    if not (0 < basis.scaling <= mtp_file.MAX_ABS_VALUE and 0 <= basis.min_dist < basis.max_dist):
        return f"scaling {basis.scaling}, cutoffs {basis.min_dist} {basis.max_dist}"
    basis.core  # noqa: B018  (the core's own checks)
    if theta is not None and (theta.shape != (basis.n_params,) or not np.all(np.isfinite(theta))
                              or np.abs(theta).max() > mtp_file.MAX_ABS_VALUE):
        return f"theta of shape {theta.shape}, largest {np.abs(theta).max()}"
    return None


def _kind_ok(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind == "level":
        return value in LEVELS and not isinstance(value, bool)
    if kind in ("species", "paths"):
        items = (str, int) if kind == "species" else str
        return (isinstance(value, list) and bool(value)
                and all(isinstance(v, items) and not isinstance(v, bool) for v in value))
    if kind is float:
        return _finite(value)
    return isinstance(value, kind) and not isinstance(value, bool)


def _train_problem(args, text: str) -> str | None:
    config = tomllib.loads(text.replace("\r\n", "\n").replace("\r", "\n"))  # as read_text() reads it
    for key, value in config.items():
        got = args.schedule_options if key == "schedule_options" else getattr(args, key)
        if key in TRAIN_KINDS and not _kind_ok(got, TRAIN_KINDS[key]):
            return f"{key} = {got!r}"
        if repr(got) != repr(value):  # repr: nan equals nan
            return f"{key} = {got!r}, the file says {value!r}"
    return None


def _campaign_problem(campaign) -> str | None:
    if not campaign.runs:
        return "no runs"
    for spec in campaign.runs:
        json.dumps(spec, allow_nan=False)  # the run's hash
        optimizer = spec["optimizer"]
        if not (_kind_ok(spec["seed"], int) and _kind_ok(spec["threads"], int) and spec["threads"] >= 1
                and isinstance(spec["dataset"], dict) and isinstance(spec["model"], dict) and "name" in optimizer):
            return f"run {spec}"[:200]
        wrong = [k for k, kind in OPTIMIZER_KINDS.items() if k in optimizer and not _kind_ok(optimizer[k], kind)]
        if wrong:
            return f"optimizer {optimizer.get('name')!r}: {wrong[0]} = {optimizer[wrong[0]]!r}"
    return None


class Reader(NamedTuple):
    file_name: str
    read: Callable[[Path], object]
    error: type
    problem: Callable[[object, str], str | None]


@functools.cache
def readers() -> dict[str, Reader]:
    return {
        "cfg": Reader("fuzz.cfg", read_cfg, FormatError, lambda r, _: _configurations_problem(r, _type_ok)),
        "mtp": Reader("fuzz.mtp", mtp_file.read_mtp, FormatError, lambda r, _: _mtp_problem(r)),
        "mlearn-json": Reader("fuzz.json", read_mlearn_json, FormatError,
                              lambda r, _: _configurations_problem(r, _ELEMENTS.__contains__)),
        "study-json": Reader("fuzz.json", read_study_json, FormatError,
                             lambda r, _: _configurations_problem(r, _type_ok)),
        "extxyz": Reader("fuzz.xyz", read_ase, FormatError,
                         lambda r, _: _configurations_problem(r, _ELEMENTS.__contains__)),
        "train-toml": Reader("fuzz.toml", _TrainConfig(), ValueError, _train_problem),
        "campaign-toml": Reader("fuzz.toml", load_campaign, ValueError, lambda r, _: _campaign_problem(r)),
    }


class Outcome(NamedTuple):
    kind: str    # "valid", "refused" (the documented error, naming the file), "unnamed", "invalid" or "leak"
    detail: str  # the error's type and message, or what failed validation


def outcome(fmt: str, data: bytes, folder: Path) -> Outcome:
    """Read ``data`` as a file of format ``fmt`` in ``folder`` and classify what happens."""
    reader = readers()[fmt]
    path = folder / reader.file_name
    path.write_bytes(data)
    try:
        result = reader.read(path)
    except reader.error as err:
        named = str(err).startswith(f"{path}:") or str(err).startswith(f"{path},")
        return Outcome("refused" if named else "unnamed", f"{type(err).__name__}: {err}"[:300])
    except (Exception, SystemExit) as err:  # argparse exits; nothing else may escape either
        return Outcome("leak", f"{type(err).__name__}: {err}"[:300])
    try:
        problem = reader.problem(result, data.decode())
    except Exception as err:  # validation itself failed on the object
        problem = f"{type(err).__name__}: {err}"[:300]
    return Outcome("invalid", problem) if problem else Outcome("valid", "")


# ----------------------------------------------------------------------------- the CI suite

def scratch_folder() -> tempfile.TemporaryDirectory:
    """Where the cases are written: in memory (/dev/shm) where there is one, since a write and an open on disk
    can cost more than the parse (≈ 2 ms against ≈ 0.03 ms here)."""
    shm = Path("/dev/shm")
    memory = shm.is_dir() and os.access(shm, os.W_OK)
    return tempfile.TemporaryDirectory(prefix="mtpfit-fuzz-", dir=shm if memory else None)


@pytest.fixture(scope="module")
def folder():
    with scratch_folder() as name:
        yield Path(name)


def test_seeds_are_read_and_valid(folder):
    """Each unmutated seed parses and passes validation, so that a refusal is the mutation's doing."""
    for fmt in FORMATS:
        for seed in seeds(fmt):
            assert outcome(fmt, seed.text.encode(), folder) == ("valid", ""), (fmt, seed.name)
            assert seed.numbers and (fmt in _REFUSES or any(bad for _, _, bad in seed.numbers)), (fmt, seed.name)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzz(fmt, folder):
    cases = []

    @settings(max_examples=CASES_PER_FORMAT, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.randoms(use_true_random=False))
    def case(rng):
        mutation = mutate(fmt, rng)
        result = outcome(fmt, mutation.data, folder)
        cases.append(mutation.must_refuse)
        assert result.kind in ("valid", "refused"), f"{mutation.label}: {result.kind}: {result.detail}"
        assert not (mutation.must_refuse and result.kind == "valid"), f"{mutation.label}: accepted silently"

    case()
    assert len(cases) >= CASES_PER_FORMAT and sum(cases) > CASES_PER_FORMAT // 20  # the claims are exercised
