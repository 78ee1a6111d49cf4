"""MLIP ``.cfg`` files (MTP_SPEC §10): reading and bit-exact writing."""
from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

from ..data.configuration import Configuration
from .errors import FormatError

__all__ = ["read_cfg", "write_cfg", "type_names", "name_species", "MAX_TYPE"]

#: Largest ``type`` a file may give. A type indexes the potential's species, of which an ``.mtp`` file holds at
#: most ``mtpfit.potential.mtp_file.MAX_SPECIES`` (128); a larger type is a corrupt file, refused here rather than
#: turned into a species no potential can have.
MAX_TYPE = 127
# ``id`` is not used, only checked: it must be an integer that fits the int64 column it is read into.
_ID_RANGE = (-2**63, 2**63 - 1)
# What MLIP's reader takes as numbers (ASCII, no digit separators); float() alone also takes "1_0" and "infinity".
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?(?:nan|inf(?:inity)?)",
                    re.IGNORECASE)
_INT = re.compile(r"[-+]?[0-9]+")

_COORDINATES = {"cartes": ("cartes_x", "cartes_y", "cartes_z"),
                "direct": ("direct_x", "direct_y", "direct_z")}
_FORCES = ("fx", "fy", "fz")
_KNOWN_COLUMNS = {"id", "type", *_COORDINATES["cartes"], *_COORDINATES["direct"], *_FORCES}
# Any other AtomData column (MLIP's nbh_grades, charge, magmom_x, ...) is per-atom data of real numbers under a name
# of this form: MLIP-3 knows a fixed list and refuses the rest, but a file of a newer MLIP, or of another writer's
# extension, is still readable here.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# PlusStress component -> entry of the symmetric 3x3 tensor
_STRESS_INDEX = {"xx": (0, 0), "yy": (1, 1), "zz": (2, 2), "yz": (1, 2), "xz": (0, 2), "xy": (0, 1)}
_STRESS_ORDER = ("xx", "yy", "zz", "yz", "xz", "xy")
_KEYWORDS = {"BEGIN_CFG", "END_CFG", "Size", "Supercell", "AtomData", "Energy", "PlusStress",
             "Feature"}
# Features that name the configuration's group, in order of precedence.
_GROUP_FEATURES = ("config_type", "group")


def type_names(species: Sequence[str]) -> list[str]:
    """Check the names of types 0 … S−1 given for ``.cfg`` type indices: distinct non-empty strings, stripped.

    Raises
    ------
    TypeError
        For a name that is not a string (integer labels are the type indices themselves: pass none).
    ValueError
        For an empty or repeated name.
    """
    names = []
    for name in species:
        if not isinstance(name, str):
            raise TypeError(f"species names types 0…S−1 by element symbol, got {name!r} ({type(name).__name__})")
        if not name.strip():
            raise ValueError("species has an empty name")
        names.append(name.strip())
    if len(set(names)) != len(names):
        raise ValueError(f"species {names} repeats a name")
    return names


def name_species(configurations: list[Configuration], species: Sequence[str],
                 path: str | os.PathLike) -> list[Configuration]:
    """Give configurations read from ``path`` the species names of types 0 … S−1.

    Integer species are type indices, as ``.cfg`` files (and study JSON) hold them: type k becomes
    ``species[k]``, in place. Element symbols (extended XYZ, mlearn JSON) are only checked to be among
    ``species``; their order is the file's and is not changed.

    Parameters
    ----------
    configurations : list of Configuration
    species : sequence of str
        Element symbol of each type 0 … S−1.
    path : str or os.PathLike
        The file they were read from, for error messages.

    Returns
    -------
    list of Configuration
        ``configurations``.

    Raises
    ------
    FormatError
        For a type ≥ ``len(species)``, naming the file and configuration.
    ValueError
        For elements that are not in ``species``, naming them and the first configuration holding them.
    TypeError, ValueError
        For ``species`` that are not distinct names (:func:`type_names`).
    """
    names = type_names(species)
    for k, c in enumerate(configurations):
        if c.species.dtype.kind in "iu":
            beyond = c.species[(c.species < 0) | (c.species >= len(names))]
            if len(beyond):
                raise FormatError(path, f"type {beyond[0]}, but species names types 0…{len(names) - 1} "
                                        f"({', '.join(names)})", index=k)
            c.species = np.array(names)[c.species]
        else:
            missing = sorted({str(s) for s in c.species.tolist()} - set(names))
            if missing:
                raise ValueError(f"{c.source}: elements {', '.join(missing)} are not in species {names}")
    return configurations


def read_cfg(path: str | os.PathLike, species: Sequence[str] | None = None) -> list[Configuration]:
    """Read every configuration of an MLIP ``.cfg`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file. CRLF line ends and blank lines are tolerated.
    species : sequence of str, optional
        Element symbol of each type 0 … S−1, e.g. ``["C", "H"]``: type k is read as ``species[k]``.

    Returns
    -------
    list of Configuration
        In file order. ``species`` are the 0-based ``type`` column (int array, 0 when the
        column is absent), or their names when ``species`` is given; positions (N, 3) in Å (``direct_*`` columns are converted with
        the cell); ``cell`` (3, 3) in Å from ``Supercell`` (missing rows are zero rows and
        not periodic), ``None`` without a ``Supercell``; ``energy`` in eV; ``forces``
        (N, 3) in eV/Å; ``plus_stress`` the symmetric (3, 3) PlusStress in eV;
        ``features`` the ``Feature`` lines as ``{key: str}``; ``group`` the
        ``config_type`` (else ``group``) feature; ``atom_data`` every other ``AtomData``
        column (e.g. ``nbh_grades``, the per-atom γ of ``mtpfit grade --mode neighbourhood``
        and MLIP) as a float array (N,) under its name, in the file's column order.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        On a malformed file, naming the file and the line: missing or invalid ``Size``,
        more or fewer atom lines than ``Size``, non-numeric or non-finite values, missing or
        repeated ``AtomData`` columns, a column name that is not a name (letters, digits
        and ``_``, not starting with a digit), direct coordinates without a 3-row
        ``Supercell``, ``BEGIN_CFG`` without ``END_CFG``, unknown keywords, text outside
        a configuration, or a file without any configuration; with ``species``, a type
        ≥ ``len(species)`` (naming the configuration and the atom's line).
    TypeError, ValueError
        For ``species`` that are not distinct names (:func:`type_names`).
    """
    return _CfgReader(path, None if species is None else type_names(species)).read()


def write_cfg(path: str | os.PathLike, configurations: Configuration | Iterable[Configuration],
              species_order: Sequence | None = None) -> None:
    """Write configurations to an MLIP ``.cfg`` file that :func:`read_cfg` reads back exactly.

    Every float is written as its shortest round-trip representation (``repr``), so
    positions, cell, energy, forces and PlusStress survive write → read bit for bit.

    What a ``.cfg`` file cannot hold:

    * Cell rows along non-periodic directions. ``Supercell`` rows *are* the periodic
      lattice vectors in this format, so only rows with ``pbc`` True are written, in
      order; a non-periodic row carries no physics for an MTP (no images along it) and
      is dropped. A configuration that is periodic along no row is written without
      ``Supercell`` and reads back with ``cell=None``. With ``pbc`` False on a middle
      row, the periodic rows read back as rows 0, 1 — the same lattice, renumbered.
    * ``weights`` (not written) and ``force_mask`` (a configuration whose mask leaves
      some forces unlabelled is refused rather than written with invented labels).
    * Feature values other than strings: they are written with ``str`` and read back as
      strings; leading and trailing whitespace of a value is not preserved.

    ``atom_data`` (per-atom values such as ``nbh_grades``) is written as further
    ``AtomData`` columns after the forces, as MLIP writes ``nbh_grades``, and read back
    bit for bit.

    ``group``, when set, is written as the ``config_type`` feature unless the features
    already name that group, so that it is read back.

    Parameters
    ----------
    path : str or os.PathLike
        Output file, overwritten.
    configurations : Configuration or iterable of Configuration
        What to write (a :class:`~mtpfit.data.dataset.Dataset` works).
    species_order : sequence, optional
        Species labels in type order: the atom of species ``species_order[t]`` is written
        with type ``t``. Required when the species are not non-negative integers (for
        example element symbols); without it integer species are written as types.

    Raises
    ------
    ValueError
        If there is no configuration, if a species cannot be mapped to a type, if a
        force mask leaves forces unlabelled, if a feature key is empty or contains
        whitespace or a feature value contains a line break, or if a per-atom data name is
        not a column name (letters, digits and ``_``, not starting with a digit) or is one of
        the columns the format defines (id, type, cartes_*, direct_*, fx fy fz); the message
        names the configuration's ``source``.
    """
    if isinstance(configurations, Configuration):
        configurations = [configurations]
    type_of = None if species_order is None else {s: t for t, s in enumerate(species_order)}
    blocks = [_format_configuration(c, type_of) for c in configurations]
    if not blocks:
        raise ValueError(f"{os.fspath(path)}: no configurations to write")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(blocks))


# ----------------------------------------------------------------------------- reading

def _is_keyword(token: str) -> bool:
    return token.rstrip(":") in _KEYWORDS


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


class _CfgReader:
    """Line-by-line parser; holds the position so that every error can name its line."""

    def __init__(self, path: str | os.PathLike, species: list[str] | None = None):
        self.path = os.fspath(path)
        self.species = species
        try:
            # newline=None turns CRLF (and CR) into "\n"; split("\n") rather than
            # splitlines() keeps line numbers equal to what an editor shows.
            with open(path, encoding="utf-8", newline=None) as f:
                self.lines = f.read().split("\n")
        except UnicodeDecodeError as exc:
            raise FormatError(self.path, f"not a UTF-8 text file ({exc.reason})") from None
        if self.lines[-1] == "":  # the final newline does not open another line
            self.lines.pop()
        self.pos = 0

    def error(self, message: str, line: int) -> FormatError:
        return FormatError(self.path, message, line=line)

    # -- cursor

    def peek(self) -> tuple[int, list[str]] | None:
        """Next non-blank line as (line number, tokens), without consuming it."""
        while self.pos < len(self.lines) and not self.lines[self.pos].strip():
            self.pos += 1
        if self.pos == len(self.lines):
            return None
        return self.pos + 1, self.lines[self.pos].split()

    def take(self) -> tuple[int, list[str]] | None:
        item = self.peek()
        if item is not None:
            self.pos += 1
        return item

    def take_value_line(self, keyword_line: int, keyword: str) -> tuple[int, list[str]]:
        """The line of values that follows a keyword line."""
        item = self.peek()
        if item is None or _is_keyword(item[1][0]):
            raise self.error(f"{keyword} without a line of values", keyword_line)
        return self.take()

    # -- values

    def float_(self, token: str, line: int, what: str) -> float:
        if not _FLOAT.fullmatch(token):
            raise self.error(f"{what}: {token[:40]!r} is not a number", line)
        value = float(token)
        if not math.isfinite(value):
            raise self.error(f"{what}: {token!r} is not finite", line)
        return value

    def int_(self, token: str, line: int, what: str, low: int, high: int) -> int:
        if not _INT.fullmatch(token):
            raise self.error(f"{what}: {token[:40]!r} is not an integer", line)
        # past 20 characters a token is beyond int64 (unless zero-padded, which no writer does); checked before
        # int() so that a long token cannot reach int()'s own digit limit
        value = int(token) if len(token) <= 20 else high + 1
        if not low <= value <= high:
            raise self.error(f"{what}: {token[:40]} is out of range {low}…{high}", line)
        return value

    def floats(self, tokens: list[str], count: int, line: int, what: str) -> list[float]:
        if len(tokens) != count:
            raise self.error(f"{what}: expected {count} values, found {len(tokens)}", line)
        return [self.float_(t, line, what) for t in tokens]

    # -- file and blocks

    def read(self) -> list[Configuration]:
        configurations = []
        while (item := self.take()) is not None:
            line, tokens = item
            if tokens[0] != "BEGIN_CFG":
                raise self.error(f"expected BEGIN_CFG, found {' '.join(tokens)[:40]!r}", line)
            configurations.append(self.read_block(line, len(configurations)))
        if not configurations:
            raise FormatError(self.path, "no configuration (no BEGIN_CFG)")
        return configurations

    def read_block(self, begin: int, index: int) -> Configuration:
        block = _Block(begin)
        handlers = {"Size": self.read_size, "Supercell": self.read_supercell,
                    "AtomData": self.read_atoms, "Energy": self.read_energy,
                    "PlusStress": self.read_stress, "Feature": self.read_feature}
        while True:
            item = self.take()
            if item is None or item[1][0] == "BEGIN_CFG":
                raise self.error("BEGIN_CFG without END_CFG", begin)
            line, tokens = item
            keyword = tokens[0].rstrip(":")
            if keyword == "END_CFG":
                return self.build(block, index)
            if keyword not in handlers:
                raise self.error(f"unknown keyword {tokens[0]!r}", line)
            if keyword in block.seen and keyword != "Feature":
                raise self.error(f"{keyword} given twice in one configuration", line)
            block.seen.add(keyword)
            handlers[keyword](block, line, tokens)

    def read_size(self, block: "_Block", line: int, tokens: list[str]) -> None:
        value_line, values = self.take_value_line(line, "Size")
        size = int(values[0]) if len(values) == 1 and _INT.fullmatch(values[0]) and len(values[0]) <= 20 else 0
        if size <= 0:
            raise self.error(f"Size must be a positive integer, found {' '.join(values)!r}",
                             value_line)
        block.size = size

    def read_supercell(self, block: "_Block", line: int, tokens: list[str]) -> None:
        rows = []
        while (item := self.peek()) is not None and _is_number(item[1][0]):
            row_line, values = self.take()
            if len(rows) == 3:
                raise self.error("Supercell has more than 3 rows", row_line)
            rows.append(self.floats(values, 3, row_line, "Supercell row"))
        if not rows:
            raise self.error("Supercell without rows", line)
        block.cell_rows = rows

    def read_atoms(self, block: "_Block", line: int, tokens: list[str]) -> None:
        if block.size is None:
            raise self.error("AtomData before Size", line)
        columns = tokens[1:]
        self.check_columns(columns, line)
        block.atoms_line = line
        rows = []
        for k in range(block.size):
            item = self.peek()
            if item is None or _is_keyword(item[1][0]):
                where = item[0] if item is not None else len(self.lines)  # or the last line
                raise self.error(f"Size is {block.size} but AtomData has {k} atom lines", where)
            row_line, values = self.take()
            if len(values) != len(columns):
                raise self.error(f"atom line: expected {len(columns)} values "
                                 f"({' '.join(columns)}), found {len(values)}", row_line)
            rows.append((row_line, values))
        block.atom_lines = [ln for ln, _ in rows]
        item = self.peek()
        if item is not None and not _is_keyword(item[1][0]) and len(item[1]) == len(columns):
            raise self.error(f"more atom lines than Size ({block.size})", item[0])
        block.atoms = {name: self.column(name, [(ln, v[j]) for ln, v in rows])
                       for j, name in enumerate(columns)}

    def check_columns(self, columns: list[str], line: int) -> None:
        unnamed = [c for c in columns if c not in _KNOWN_COLUMNS and not _NAME.fullmatch(c)]
        if unnamed:
            raise self.error(f"AtomData column(s) {', '.join(repr(c[:40]) for c in unnamed)} are not names "
                             "(letters, digits and _, not starting with a digit)", line)
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise self.error(f"repeated AtomData column(s) {', '.join(repeated)}", line)
        kinds = [kind for kind, names in _COORDINATES.items() if any(n in columns for n in names)]
        if len(kinds) != 1 or not all(n in columns for n in _COORDINATES[kinds[0]]):
            raise self.error("AtomData needs exactly one of cartes_x cartes_y cartes_z or "
                             "direct_x direct_y direct_z", line)
        if any(f in columns for f in _FORCES) and not all(f in columns for f in _FORCES):
            raise self.error("AtomData has only some of the force columns fx fy fz", line)

    def column(self, name: str, cells: list[tuple[int, str]]) -> np.ndarray:
        if name in ("id", "type"):
            low, high = (0, MAX_TYPE) if name == "type" else _ID_RANGE
            what = "type (a non-negative species index)" if name == "type" else name
            return np.array([self.int_(token, ln, what, low, high) for ln, token in cells], dtype=np.int64)
        return np.array([self.float_(token, ln, name) for ln, token in cells])

    def read_energy(self, block: "_Block", line: int, tokens: list[str]) -> None:
        value_line, values = self.take_value_line(line, "Energy")
        block.energy = self.floats(values, 1, value_line, "Energy")[0]

    def read_stress(self, block: "_Block", line: int, tokens: list[str]) -> None:
        names = tokens[1:] or list(_STRESS_ORDER)
        if sorted(names) != sorted(_STRESS_ORDER):
            raise self.error(f"PlusStress components must be {' '.join(_STRESS_ORDER)} in "
                             f"some order, found {' '.join(names)!r}", line)
        value_line, values = self.take_value_line(line, "PlusStress")
        stress = np.zeros((3, 3))
        for name, value in zip(names, self.floats(values, 6, value_line, "PlusStress")):
            i, j = _STRESS_INDEX[name]
            stress[i, j] = stress[j, i] = value
        block.plus_stress = stress

    def read_feature(self, block: "_Block", line: int, tokens: list[str]) -> None:
        parts = self.lines[line - 1].strip().split(None, 2)
        if len(parts) < 2:
            raise self.error("Feature without a name", line)
        key = parts[1]
        if key in block.features:
            raise self.error(f"Feature {key!r} given twice", line)
        block.features[key] = parts[2] if len(parts) == 3 else ""

    def build(self, block: "_Block", index: int) -> Configuration:
        if block.size is None:
            raise self.error("configuration without Size", block.begin)
        if block.atoms is None:
            raise self.error("configuration without AtomData", block.begin)
        cell = pbc = None
        if block.cell_rows is not None:
            cell = np.zeros((3, 3))
            cell[:len(block.cell_rows)] = block.cell_rows
            pbc = np.arange(3) < len(block.cell_rows)
        atoms = block.atoms
        if "cartes_x" in atoms:
            positions = np.column_stack([atoms[n] for n in _COORDINATES["cartes"]])
        elif block.cell_rows is None or len(block.cell_rows) < 3:
            raise self.error("direct coordinates need a Supercell with 3 rows",
                             block.atoms_line)
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, as non-finite
                positions = np.column_stack([atoms[n] for n in _COORDINATES["direct"]]) @ cell
        forces = np.column_stack([atoms[n] for n in _FORCES]) if "fx" in atoms else None
        species = atoms.get("type", np.zeros(block.size, dtype=np.int64))
        if self.species is not None:
            species = self.named(species, block, index)
        group = next((block.features[k] for k in _GROUP_FEATURES if k in block.features), None)
        source = f"{self.path}, configuration {index} (line {block.begin})"
        atom_data = {name: values for name, values in atoms.items() if name not in _KNOWN_COLUMNS}
        try:
            return Configuration(positions=positions, species=species, cell=cell, pbc=pbc,
                                 energy=block.energy, forces=forces,
                                 plus_stress=block.plus_stress, group=group, source=source,
                                 features=block.features, atom_data=atom_data)
        except ValueError as exc:
            raise self.error(str(exc).removeprefix(f"{source}: "), block.begin) from None


    def named(self, types: np.ndarray, block: "_Block", index: int) -> np.ndarray:
        """Type k → ``self.species[k]``."""
        beyond = np.flatnonzero(types >= len(self.species))
        if len(beyond):
            k = int(beyond[0])
            raise self.error(f"configuration {index}: atom {k + 1} has type {types[k]}, but species names only "
                             f"types 0…{len(self.species) - 1} ({', '.join(self.species)})", block.atom_lines[k])
        return np.array(self.species)[types]


class _Block:
    """What has been read of one BEGIN_CFG … END_CFG block."""

    def __init__(self, begin: int):
        self.begin = begin
        self.seen: set[str] = set()
        self.size: int | None = None
        self.cell_rows: list[list[float]] | None = None
        self.atoms: dict[str, np.ndarray] | None = None
        self.atoms_line = begin
        self.atom_lines: list[int] = []
        self.energy: float | None = None
        self.plus_stress: np.ndarray | None = None
        self.features: dict[str, str] = {}


# ----------------------------------------------------------------------------- writing

def _r(value) -> str:
    # float() first: numpy 2 scalars repr as "np.float64(...)".
    return repr(float(value))


def _types(c: Configuration, type_of: dict | None) -> list[int]:
    if type_of is not None:
        missing = sorted({str(s) for s in c.species.tolist() if s not in type_of})
        if missing:
            raise ValueError(f"{c.source}: species {', '.join(missing)} not in species_order")
        return [type_of[s] for s in c.species.tolist()]
    if c.species.dtype.kind not in "iu" or np.any(c.species < 0):
        raise ValueError(f"{c.source}: species {c.species.dtype} are not non-negative integer "
                         "types; pass species_order to write_cfg")
    return [int(s) for s in c.species]


def _features(c: Configuration) -> dict[str, str]:
    features = {str(k): str(v) for k, v in c.features.items()}
    named = next((features[k] for k in _GROUP_FEATURES if k in features), None)
    if c.group is not None and named != c.group:
        features["config_type"] = str(c.group)
    for key, value in features.items():
        if not key or any(ch.isspace() for ch in key):
            raise ValueError(f"{c.source}: feature name {key!r} is empty or contains whitespace")
        if "\n" in value or "\r" in value:
            raise ValueError(f"{c.source}: feature {key!r} has a line break in its value")
    return features


def _atom_data(c: Configuration) -> dict[str, np.ndarray]:
    for name in c.atom_data:
        if name in _KNOWN_COLUMNS or not _NAME.fullmatch(name):
            raise ValueError(f"{c.source}: per-atom data {name!r} cannot be an AtomData column (a name of letters, "
                             f"digits and _, not starting with a digit, and none of {' '.join(sorted(_KNOWN_COLUMNS))})")
    return c.atom_data


def _format_configuration(c: Configuration, type_of: dict | None) -> str:
    if c.force_mask is not None and c.forces is not None and not c.force_mask.all():
        raise ValueError(f"{c.source}: a .cfg file cannot mark forces as unlabelled "
                         "(force_mask has False entries)")
    types = _types(c, type_of)
    features = _features(c)
    out = ["BEGIN_CFG", " Size", f"    {c.n_atoms}"]
    if c.cell is not None and c.pbc.any():
        out.append(" Supercell")
        out += ["    " + " ".join(f"{_r(x):>24}" for x in row) for row in c.cell[c.pbc]]
    extra = _atom_data(c)
    columns = list(_COORDINATES["cartes"]) + (list(_FORCES) if c.forces is not None else []) + list(extra)
    table = np.column_stack([c.positions] + ([c.forces] if c.forces is not None else []) + list(extra.values()))
    out.append(f" AtomData:{'id':>6} {'type':>4} " + " ".join(f"{n:>24}" for n in columns))
    for k in range(c.n_atoms):
        out.append(f"{'':10}{k + 1:6d} {types[k]:4d} " + " ".join(f"{_r(x):>24}" for x in table[k]))
    if c.energy is not None:
        out += [" Energy", f"    {_r(c.energy)}"]
    if c.plus_stress is not None:
        out.append(" PlusStress:" + " ".join(f"{n:>24}" for n in _STRESS_ORDER))
        out.append(f"{'':12}" + " ".join(f"{_r(c.plus_stress[_STRESS_INDEX[n]]):>24}"
                                         for n in _STRESS_ORDER))
    out += [f" Feature   {key} {value}" for key, value in features.items()]
    out.append("END_CFG\n")
    return "\n".join(out)
