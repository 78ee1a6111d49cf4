"""Read and write MLIP ``.mtp`` files (MTP_SPEC §9), the format MLIP-2, MLIP-3 and LAMMPS read."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..io.errors import FormatError
from .basis import MTPBasis

__all__ = ["read_mtp", "write_mtp"]

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)", re.IGNORECASE)
_PAIR = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def _numbers(text: str, where: tuple) -> list[float]:
    values = [float(v) for v in _NUMBER.findall(text)]
    if not np.all(np.isfinite(values)):
        raise FormatError(where[0], "non-finite number", line=where[1])
    return values


def read_mtp(path) -> tuple[MTPBasis, np.ndarray | None]:
    """Read an ``.mtp`` file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    basis : MTPBasis
    theta : ndarray, shape (n_params,), or None
        The coefficients [radial | species | moment] of a trained file; ``None`` for an
        untrained one (no ``radial_coeffs``/``species_coeffs``/``moment_coeffs``).

    Raises
    ------
    FileNotFoundError
    FormatError
        Missing or inconsistent fields, wrong counts, non-finite numbers; the message names
        the file and line.
    """
    path = Path(path)
    lines = path.read_text().replace("\r\n", "\n").replace("\r", "\n").split("\n")
    fields: dict[str, tuple[str, int]] = {}
    radial: dict[tuple[int, int], list[list[float]]] = {}
    scalings: list[float] = []
    current_pair = None
    if not lines or lines[0].split("<<<")[0].strip() != "MTP":
        raise FormatError(path, "an .mtp file starts with the line 'MTP'", line=1)
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.split("<<<")[0].strip()
        where = (path, number)
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            key, value = (s.strip() for s in line.split("=", 1))
            if key == "scaling":
                scalings.append(_single(value, where))
            else:
                fields[key] = (value, number)
            current_pair = None
        elif line == "radial_coeffs":
            current_pair = None
        elif _PAIR.match(line):
            a, b = (int(x) for x in _PAIR.match(line).groups())
            current_pair = (a, b)
            radial[current_pair] = []
        elif line.startswith("{") and current_pair is not None:
            radial[current_pair].append(_numbers(line, where))
        else:
            raise FormatError(path, f"cannot read {line!r}", line=number)

    def get(key, convert=None, default=None):
        if key not in fields:
            if default is not None:
                return default
            raise FormatError(path, f"missing field '{key}'")
        value, number = fields[key]
        try:
            return convert(value, (path, number)) if convert else value
        except FormatError:
            raise
        except (ValueError, IndexError) as err:
            raise FormatError(path, f"bad value for '{key}': {value!r}", line=number) from err

    def integer(value, where):
        v = _single(value, where)
        if v != int(v):
            raise FormatError(where[0], f"expected an integer, got {value!r}", line=where[1])
        return int(v)

    def tuples(value, where):
        return [_numbers(t, where) for t in re.findall(r"\{([^{}]*)\}", value)]

    if get("radial_basis_type", default="RBChebyshev") != "RBChebyshev":
        raise FormatError(path, "only RBChebyshev is supported", line=fields["radial_basis_type"][1])
    S = get("species_count", integer)
    K = get("radial_funcs_count", integer)
    R = get("radial_basis_size", integer)
    n_moments = get("alpha_moments_count", integer)
    basic = get("alpha_index_basic", tuples)
    times = get("alpha_index_times", tuples, default=[]) if get("alpha_index_times_count", integer) else []
    mapping = get("alpha_moment_mapping", lambda v, w: _numbers(v, w))
    _check_count(path, fields, "alpha_index_basic_count", len(basic), integer)
    _check_count(path, fields, "alpha_index_times_count", len(times), integer)
    _check_count(path, fields, "alpha_scalar_moments", len(mapping), integer)
    for key, rows in (("alpha_index_basic", basic), ("alpha_index_times", times)):
        if any(len(r) != 4 for r in rows):
            raise FormatError(path, f"every entry of {key} has 4 integers", line=fields[key][1])
    try:
        basis = MTPBasis(
            species_count=S, min_dist=get("min_dist", _single), max_dist=get("max_dist", _single),
            radial_basis_size=R, radial_funcs_count=K, alpha_moments_count=n_moments,
            alpha_index_basic=np.array(basic, dtype=np.int32).reshape(-1, 4),
            alpha_index_times=np.array(times, dtype=np.int32).reshape(-1, 4),
            alpha_moment_mapping=np.array(mapping, dtype=np.int32),
            scaling=float(np.prod(scalings)) if scalings else 1.0,
            potential_name=get("potential_name", default="MTP1m"),
            potential_tag=fields.get("potential_tag", ("", 0))[0])
        basis.core  # validates indices
    except ValueError as err:
        raise FormatError(path, str(err)) from err

    trained = [k in fields for k in ("species_coeffs", "moment_coeffs")] + [bool(radial)]
    if not any(trained):
        return basis, None
    if not all(trained):
        raise FormatError(path, "a trained file needs radial_coeffs, species_coeffs and moment_coeffs")
    blocks = []
    for a in range(S):
        for b in range(S):
            rows = radial.get((a, b))
            if rows is None or len(rows) != K or any(len(r) != R for r in rows):
                raise FormatError(path, f"radial_coeffs block {a}-{b} must have {K} rows of {R} numbers")
            blocks.append(np.array(rows))
    species = get("species_coeffs", lambda v, w: _numbers(v, w))
    moments = get("moment_coeffs", lambda v, w: _numbers(v, w))
    if len(species) != S:
        raise FormatError(path, f"{len(species)} species_coeffs for {S} species", line=fields["species_coeffs"][1])
    if len(moments) != len(mapping):
        raise FormatError(path, f"{len(moments)} moment_coeffs for {len(mapping)} scalar moments",
                          line=fields["moment_coeffs"][1])
    theta = np.concatenate([np.ravel(blocks), species, moments])
    return basis, theta


def _single(value: str, where: tuple) -> float:
    values = _numbers(value, where)
    if len(values) != 1:
        raise FormatError(where[0], f"expected one number, got {value!r}", line=where[1])
    return values[0]


def _check_count(path, fields, key, actual, integer):
    if key in fields:
        value, number = fields[key]
        declared = integer(value, (path, number))
        if declared != actual:
            raise FormatError(path, f"{key} = {declared} but {actual} entries follow", line=number)


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
