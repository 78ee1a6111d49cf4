"""Read and write MLIP ``.mtp`` files (MTP_SPEC §9), the format MLIP-2, MLIP-3 and LAMMPS read."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..io.errors import FormatError
from .basis import MTPBasis, tag_elements

__all__ = ["read_mtp", "write_mtp", "MAX_SPECIES", "MAX_RADIAL_FUNCS", "MAX_RADIAL_BASIS_SIZE", "MAX_MOMENTS",
           "MAX_PRODUCTS", "MAX_DEGREE", "MAX_ABS_VALUE"]

# Limits checked when a file is read. Each lies far above what MLIP's templates (levels 6–28) and the published
# potentials use, and far below what would exhaust memory or time: the core keeps these counts in 32-bit ints and
# allocates per species pair, per moment and per product, so a count of 10⁹ is a corrupt file, not a potential.
#: Species types S: more than the 118 elements; θ holds S² radial blocks.
MAX_SPECIES = 128
#: Radial functions K (the templates use 2–6).
MAX_RADIAL_FUNCS = 32
#: Chebyshev polynomials R (MLIP uses 4–12; at the limits the radial block is 128²·32·32 doubles, 134 MB).
MAX_RADIAL_BASIS_SIZE = 32
#: Moments, basic and products (level 28 has 17 366).
MAX_MOMENTS = 100_000
#: alpha_index_times entries (level 28 has 180 069).
MAX_PRODUCTS = 1_000_000
#: Tensor rank p + q + w of a basic moment (level 28 uses 10).
MAX_DEGREE = 64
#: Largest |x| of a real value (scaling, cutoffs, coefficients). Fitted coefficients of published potentials stay
#: below 1e5; 1e100 leaves any choice of units room while the squares a loss forms (1e200) stay finite, where 1e300
#: overflows at the first square. A bound on the inputs only: whether a prediction overflows is checked where it is
#: computed.
MAX_ABS_VALUE = 1e100
# An alpha_index_times multiplicity κ is stored as a 32-bit int.
_INT32 = 2**31 - 1

# ASCII numbers as MLIP's C++ reader takes them (float() alone also takes "1_0" and other scripts' digits)
_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?(?:nan|inf(?:inity)?)",
                     re.IGNORECASE)
_LIST = re.compile(r"\{([^{}]*)\}")
_NESTED = re.compile(r"\{\s*(?:\{[^{}]*\}\s*(?:,\s*\{[^{}]*\}\s*)*)?\}")
_PAIR = re.compile(r"([0-9]{1,9})\s*-\s*([0-9]{1,9})")  # more digits: no species index
_TEXT_FIELDS = {"version", "potential_name", "potential_tag", "radial_basis_type"}
_FIELDS = _TEXT_FIELDS | {
    "species_count", "min_dist", "max_dist", "radial_basis_size", "radial_funcs_count", "alpha_moments_count",
    "alpha_index_basic_count", "alpha_index_basic", "alpha_index_times_count", "alpha_index_times",
    "alpha_scalar_moments", "alpha_moment_mapping", "species_coeffs", "moment_coeffs"}


def read_mtp(path) -> tuple[MTPBasis, np.ndarray | None]:
    """Read an ``.mtp`` file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    basis : MTPBasis
        Its :attr:`~MTPBasis.elements` are the element symbols a tag ``potential_tag = elements:C,H`` names.
    theta : ndarray, shape (n_params,), or None
        The coefficients [radial | species | moment] of a trained file; ``None`` for an
        untrained one (no ``radial_coeffs``/``species_coeffs``/``moment_coeffs``).

    Raises
    ------
    FileNotFoundError
    FormatError
        Naming the file and, where there is one, the line: text that is not UTF-8; unknown, repeated or missing
        fields; a value that is not a number, not finite or beyond ±:data:`MAX_ABS_VALUE`; a count or index that
        is not an integer or lies outside its range (the ``MAX_*`` limits of this module); a list whose length
        contradicts its count; a ``potential_tag`` starting ``elements:`` that does not name ``species_count``
        distinct element symbols; a moment that is neither basic nor written by an ``alpha_index_times`` entry (it
        would be 0); radial blocks missing, repeated, outside the species or of the wrong size; a non-positive
        ``scaling``; a basis the core refuses.
    """
    return _MtpReader(path).read()


class _MtpReader:
    """Collects the fields with their line numbers, then checks and converts them, so that every error names
    its line."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            text = self.path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(self.path, f"not a UTF-8 text file ({exc.reason})") from None
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.fields: dict[str, tuple[str, int]] = {}
        self.scalings: list[tuple[str, int]] = []
        self.radial: dict[tuple[int, int], tuple[int, list[tuple[str, int]]]] = {}

    def error(self, message: str, line: int | None = None) -> FormatError:
        return FormatError(self.path, message, line=line)

    # -- pass 1: lines to fields

    def scan(self) -> None:
        if self.lines[0].split("<<<")[0].strip() != "MTP":
            raise self.error("an .mtp file starts with the line 'MTP'", 1)
        rows = None  # the radial block being read
        for number, raw in enumerate(self.lines[1:], start=2):
            line = raw.split("<<<")[0].strip()
            if not line or line.startswith("#"):  # blank, or MLIP-3's trailer
                continue
            pair = _PAIR.fullmatch(line)
            if "=" in line:
                rows = None
                self.add_field(*(s.strip() for s in line.split("=", 1)), number)
            elif line == "radial_coeffs":
                rows = None
            elif pair:
                key = (int(pair[1]), int(pair[2]))
                if key in self.radial:
                    raise self.error(f"radial_coeffs block {line} given twice "
                                     f"(first on line {self.radial[key][0]})", number)
                rows = []
                self.radial[key] = (number, rows)
            elif line.startswith("{") and rows is not None:
                rows.append((line, number))
            else:
                raise self.error(f"cannot read {line[:60]!r}", number)

    def add_field(self, key: str, value: str, number: int) -> None:
        if key == "scaling":  # a top-level and a basis-level value multiply (MTP_SPEC §2)
            self.scalings.append((value, number))
        elif key not in _FIELDS:
            raise self.error(f"unknown field {key[:40]!r}", number)
        elif key in self.fields:
            raise self.error(f"'{key}' given twice (first on line {self.fields[key][1]})", number)
        else:
            self.fields[key] = (value, number)

    # -- values

    def field(self, key: str) -> tuple[str, int]:
        if key not in self.fields:
            raise self.error(f"missing field '{key}'")
        return self.fields[key]

    def number(self, token: str, line: int, what: str) -> float:
        token = token.strip()
        if not _NUMBER.fullmatch(token):
            raise self.error(f"{what}: {token[:40]!r} is not a number", line)
        value = float(token)
        if not math.isfinite(value):
            raise self.error(f"{what}: non-finite number {token!r}", line)
        return value

    def real(self, token: str, line: int, what: str) -> float:
        value = self.number(token, line, what)
        if abs(value) > MAX_ABS_VALUE:
            raise self.error(f"{what}: {token.strip()} is beyond ±{MAX_ABS_VALUE:g} (MAX_ABS_VALUE)", line)
        return value

    def integer(self, token: str, line: int, what: str, low: int, high: int, limit: str = "") -> int:
        value = self.number(token, line, what)
        if not value.is_integer():
            raise self.error(f"{what}: {token.strip()!r} is not an integer", line)
        if not low <= value <= high:
            raise self.error(f"{what}: {token.strip()} is out of range {low}…{high}{limit}", line)
        return int(value)

    def count(self, key: str, low: int, high: int, limit: str = "") -> int:
        value, line = self.field(key)
        return self.integer(value, line, key, low, high, limit)

    def reals(self, text: str, line: int, what: str) -> list[float]:
        return [self.real(t, line, what) for t in self.list_tokens(text, line, what)]

    def list_tokens(self, text: str, line: int, what: str) -> list[str]:
        match = _LIST.fullmatch(text.strip())
        if match is None:
            raise self.error(f"{what}: expected {{x, y, …}}, found {text.strip()[:40]!r}", line)
        inner = match[1].strip()
        return inner.split(",") if inner else []

    def index_rows(self, key: str, ranges: list[tuple[int, int]]) -> list[list[int]]:
        """``{{a, b, …}, …}`` with one integer range per column."""
        if key not in self.fields:
            return []
        text, line = self.fields[key]
        if not _NESTED.fullmatch(text):
            raise self.error(f"{key}: expected {{{{…}}, {{…}}, …}}, found {text[:40]!r}", line)
        rows = []
        for k, group in enumerate(_LIST.findall(text.strip()[1:-1])):
            tokens = group.split(",")
            if len(tokens) != len(ranges):
                raise self.error(f"{key} entry {k} has {len(tokens)} values, expected {len(ranges)}", line)
            rows.append([self.integer(t, line, f"{key} entry {k}", low, high)
                         for t, (low, high) in zip(tokens, ranges)])
        return rows

    def check_count(self, key: str, actual: int, high: int) -> None:
        if key in self.fields:
            declared = self.count(key, 0, high)
            if declared != actual:
                raise self.error(f"{key} = {declared} but {actual} entries follow", self.fields[key][1])

    # -- pass 2: fields to basis and θ

    def read(self) -> tuple[MTPBasis, np.ndarray | None]:
        self.scan()
        basis = self.basis()
        trained = [k in self.fields for k in ("species_coeffs", "moment_coeffs")] + [bool(self.radial)]
        if not any(trained):
            return basis, None
        if not all(trained):
            raise self.error("a trained file needs radial_coeffs, species_coeffs and moment_coeffs")
        return basis, self.theta(basis)

    def basis(self) -> MTPBasis:
        kind, line = self.fields.get("radial_basis_type", ("RBChebyshev", None))
        if kind != "RBChebyshev":
            raise self.error(f"only RBChebyshev is supported, found {kind[:40]!r}", line)
        species_count = self.count("species_count", 1, MAX_SPECIES, " (MAX_SPECIES)")
        min_dist, max_dist = (self.real(*self.field(k), k) for k in ("min_dist", "max_dist"))
        if not 0.0 <= min_dist < max_dist:
            raise self.error(f"need 0 ≤ min_dist < max_dist, found {min_dist:g} and {max_dist:g}",
                             self.fields["max_dist"][1])
        radial_size = self.count("radial_basis_size", 2, MAX_RADIAL_BASIS_SIZE, " (MAX_RADIAL_BASIS_SIZE)")
        funcs = self.count("radial_funcs_count", 1, MAX_RADIAL_FUNCS, " (MAX_RADIAL_FUNCS)")
        moments = self.count("alpha_moments_count", 1, MAX_MOMENTS, " (MAX_MOMENTS)")
        self.field("alpha_index_basic")
        basic = self.index_rows("alpha_index_basic", [(0, funcs - 1)] + [(0, MAX_DEGREE)] * 3)
        self.check_count("alpha_index_basic_count", len(basic), MAX_MOMENTS)
        if not 1 <= len(basic) <= moments:
            raise self.error(f"{len(basic)} basic moments for alpha_moments_count = {moments}",
                             self.fields["alpha_index_basic"][1])
        if any(sum(row[1:]) > MAX_DEGREE for row in basic):
            raise self.error(f"a basic moment has p + q + w > {MAX_DEGREE} (MAX_DEGREE)",
                             self.fields["alpha_index_basic"][1])
        times = self.index_rows("alpha_index_times", [(0, moments - 1)] * 2 + [(-_INT32, _INT32),
                                                                               (len(basic), moments - 1)])
        self.check_count("alpha_index_times_count", len(times), MAX_PRODUCTS)
        if len(times) > MAX_PRODUCTS:
            raise self.error(f"{len(times)} alpha_index_times entries, more than {MAX_PRODUCTS} (MAX_PRODUCTS)",
                             self.fields["alpha_index_times"][1])
        unwritten = sorted(set(range(len(basic), moments)) - {row[3] for row in times})
        if unwritten:
            raise self.error(f"moment {unwritten[0]} is neither basic nor written by alpha_index_times "
                             f"(it would be 0): alpha_moments_count = {moments}, {len(basic)} basic moments, "
                             f"{len(times)} products", self.fields.get("alpha_index_times", self.field(
                                 "alpha_moments_count"))[1])
        text, line = self.field("alpha_moment_mapping")
        mapping = [self.integer(t, line, "alpha_moment_mapping", 0, moments - 1)
                   for t in self.list_tokens(text, line, "alpha_moment_mapping")]
        if not mapping:
            raise self.error("alpha_moment_mapping is empty: the potential has no basis function", line)
        self.check_count("alpha_scalar_moments", len(mapping), MAX_MOMENTS)
        scaling = self.scaling()
        tag, tag_line = self.fields.get("potential_tag", ("", None))
        try:
            tag_elements(tag, species_count)
        except ValueError as err:
            raise self.error(str(err), tag_line) from None
        try:
            basis = MTPBasis(
                species_count=species_count, min_dist=min_dist, max_dist=max_dist, radial_basis_size=radial_size,
                radial_funcs_count=funcs, alpha_moments_count=moments,
                alpha_index_basic=np.array(basic, dtype=np.int32).reshape(-1, 4),
                alpha_index_times=np.array(times, dtype=np.int32).reshape(-1, 4),
                alpha_moment_mapping=np.array(mapping, dtype=np.int32), scaling=scaling,
                potential_name=self.fields.get("potential_name", ("MTP1m",))[0],
                potential_tag=self.fields.get("potential_tag", ("",))[0])
            basis.core  # the core's own checks: product order, ranges
        except ValueError as err:
            raise self.error(str(err)) from None
        return basis

    def scaling(self) -> float:
        scaling = 1.0
        for value, line in self.scalings:
            factor = self.real(value, line, "scaling")
            scaling *= factor
            if not 0.0 < scaling <= MAX_ABS_VALUE:
                raise self.error(f"scaling must be positive and at most {MAX_ABS_VALUE:g}, found {scaling:g}", line)
        return scaling

    def theta(self, basis: MTPBasis) -> np.ndarray:
        S, K, R = basis.species_count, basis.radial_funcs_count, basis.radial_basis_size
        outside = [(line, pair) for pair, (line, _) in self.radial.items() if max(pair) >= S]
        if outside:
            line, (a, b) = min(outside)
            raise self.error(f"radial_coeffs block {a}-{b} for species_count = {S}", line)
        blocks = []
        for a in range(S):
            for b in range(S):
                line, rows = self.radial.get((a, b), (None, []))
                what = f"radial_coeffs block {a}-{b}"
                values = [self.reals(text, number, what) for text, number in rows]
                if len(values) != K or any(len(r) != R for r in values):
                    raise self.error(f"{what} must have {K} rows of {R} numbers", line)
                blocks.append(values)
        coefficients = {}
        for key, n in (("species_coeffs", S), ("moment_coeffs", len(basis.alpha_moment_mapping))):
            text, line = self.fields[key]
            coefficients[key] = self.reals(text, line, key)
            if len(coefficients[key]) != n:
                raise self.error(f"{len(coefficients[key])} {key} for {n} "
                                 f"{'species' if key == 'species_coeffs' else 'scalar moments'}", line)
        return np.concatenate([np.ravel(blocks), coefficients["species_coeffs"], coefficients["moment_coeffs"]])


def _list(values, fmt="{:.16e}") -> str:
    return "{" + ", ".join(fmt.format(v) for v in values) + "}"


def write_mtp(path, basis: MTPBasis, theta: np.ndarray | None) -> None:
    """Write an ``.mtp`` file that MLIP-2, MLIP-3 and LAMMPS ``pair_style mtp`` read.

    Numbers are written with 17 significant digits, so :func:`read_mtp` gives back the same
    θ bit for bit.

    Parameters
    ----------
    path : str or Path
    basis : MTPBasis
    theta : ndarray, shape (n_params,), or None
        ``None`` writes an untrained file.
    """
    S, K, R = basis.species_count, basis.radial_funcs_count, basis.radial_basis_size
    out = ["MTP", "version = 1.1.0", f"potential_name = {basis.potential_name}"]
    if basis.scaling != 1.0:
        out.append(f"scaling = {basis.scaling:.16e}")
    out += [f"species_count = {S}", f"potential_tag = {basis.potential_tag}",
            "radial_basis_type = RBChebyshev",
            f"\tmin_dist = {basis.min_dist:.16e}", f"\tmax_dist = {basis.max_dist:.16e}",
            f"\tradial_basis_size = {R}", f"\tradial_funcs_count = {K}"]
    if theta is not None:
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (basis.n_params,):
            raise ValueError(f"theta has shape {theta.shape}, expected ({basis.n_params},)")
        radial = theta[basis.blocks["radial"]].reshape(S, S, K, R)
        out.append("\tradial_coeffs")
        for a in range(S):
            for b in range(S):
                out.append(f"\t\t{a}-{b}")
                out += [f"\t\t\t{_list(row)}" for row in radial[a, b]]
    int_list = lambda rows: "{" + ", ".join(_list(r, "{:d}") for r in rows) + "}"  # noqa: E731
    out += [f"alpha_moments_count = {basis.alpha_moments_count}",
            f"alpha_index_basic_count = {len(basis.alpha_index_basic)}",
            f"alpha_index_basic = {int_list(basis.alpha_index_basic)}",
            f"alpha_index_times_count = {len(basis.alpha_index_times)}",
            f"alpha_index_times = {int_list(basis.alpha_index_times)}",
            f"alpha_scalar_moments = {len(basis.alpha_moment_mapping)}",
            f"alpha_moment_mapping = {_list(basis.alpha_moment_mapping, '{:d}')}"]
    if theta is not None:
        out += [f"species_coeffs = {_list(theta[basis.blocks['species']])}",
                f"moment_coeffs = {_list(theta[basis.blocks['moment']])}"]
    Path(path).write_text("\n".join(out) + "\n")
