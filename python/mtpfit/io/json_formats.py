"""JSON datasets: the mlearn/maml format and the optimizer study's format.

Their stresses are positive in compression (the PlusStress sign) but come in two units: mlearn/maml files store
VASP's stress in kBar, PlusStress (eV) = stress (kBar) · V (Å³) / 1602.1766208, in VASP's order; the study's
Ag–Pd file stores the PlusStress itself, in eV and MLIP's order (its loss used them so). ``stress_units`` and
``stress_order`` choose; ``None`` means the format's own convention (:data:`STRESS_CONVENTIONS`).
Plain and gzip-compressed files are both accepted (recognised by their content).
"""
from __future__ import annotations

import gzip
import json
import os
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Callable

import numpy as np
from ase.data import chemical_symbols

from ..data.configuration import Configuration
from .cfg import MAX_TYPE
from .errors import FormatError

__all__ = ["read_mlearn_json", "read_study_json", "read_json", "KBAR_PER_EV_PER_A3",
           "VASP_STRESS_ORDER", "MLIP_STRESS_ORDER", "STRESS_UNITS", "STRESS_CONVENTIONS", "StressOrderWarning"]

KBAR_PER_EV_PER_A3 = 1602.1766208
"""1 eV/Å³ in kBar (the elementary charge of CODATA 2014, as :mod:`ase.units`)."""

VASP_STRESS_ORDER = "xx yy zz xy yz xz"
MLIP_STRESS_ORDER = "xx yy zz yz xz xy"
"""The Voigt order of MLIP's ``.cfg`` PlusStress, and of :class:`~mtpfit.data.configuration.Configuration`'s
stress weights."""

STRESS_UNITS = ("kBar", "eV")
"""``"kBar"``: VASP's stress, PlusStress = stress · V / 1602.1766208; ``"eV"``: the PlusStress (virial) itself."""

STRESS_CONVENTIONS = {"mlearn": ("kBar", VASP_STRESS_ORDER), "study": ("eV", MLIP_STRESS_ORDER)}
"""Each JSON format's (units, order) when ``stress_units``/``stress_order`` are ``None``. The study's: fitted on
its Ag–Pd set, where energies and forces alone (level 10, stress weight 0) predict the stored off-diagonal
values with slope 1.00 (R² 0.997) as eV in MLIP's order, and the diagonal fluctuations with slope 0.98 (R²
0.998); read as VASP kBar the off-diagonal components were misplaced and 2.84× too small
(benchmarks/RESULTS.md §7). Its MoNbTaW ``seed_validation.json`` holds maml's kBar values in VASP order
(weight 0 in the study's loss): read it with ``stress_units="kBar", stress_order=VASP_STRESS_ORDER``."""
_COMPONENT = {"xx": (0, 0), "yy": (1, 1), "zz": (2, 2), "yz": (1, 2), "xz": (0, 2), "xy": (0, 1)}
# mlearn entries that are data or derived from it rather than metadata.
_MLEARN_NOT_FEATURES = {"structure", "outputs", "num_atoms"}
# Element symbols; index 0 of ASE's list is the dummy "X", not an element.
_ELEMENTS = frozenset(chemical_symbols[1:])
# Entries of an elastic-constant set (mlearn group "Elastic", maml tag "Strain_new"), whose sheared cells
# reveal the stress order; looked for in these fields.
_ELASTIC = re.compile("elastic|strain", re.IGNORECASE)
_ELASTIC_FIELDS = ("group", "tag", "tags", "config_type")
_SHEAR_PLANES = {"xy": (0, 1), "xz": (0, 2), "yz": (1, 2)}
# A cell entry is a shear when above this fraction of the mean cell length (not round-off), and a cell's shear
# stress reveals its plane when it exceeds the other two shear components by this factor.
_SHEAR_TOLERANCE = 1e-4
_SHEAR_DOMINANCE = 2.0


class StressOrderWarning(UserWarning):
    """The stress order a JSON file is read with contradicts its sheared elastic cells.

    A cell sheared in one plane (its cell matrix diagonal but for that plane's pair of entries) carries its
    largest shear stress in that plane's component; when the order puts it on another plane, the off-diagonal
    stresses of the whole file are read into the wrong components.

    Attributes
    ----------
    used, indicated : str
        The order the file was read with, and the order its sheared cells indicate.
    """

    def __init__(self, message: str, used: str = "", indicated: str = ""):
        super().__init__(message)
        self.used, self.indicated = used, indicated


def read_mlearn_json(path: str | os.PathLike, stress_order: str | None = None,
                     stress_units: str | None = None) -> list[Configuration]:
    """Read an mlearn/maml JSON file: a list of ``{"structure", "outputs", ...}``.

    Parameters
    ----------
    path : str or os.PathLike
        ``.json`` or gzip-compressed ``.json.gz``.
    stress_order : str, optional
        Order of the six stress values, as component names separated by spaces. The
        default (``None``) is VASP's; see Notes.
    stress_units : {"kBar", "eV"}, optional
        Units of the stored stress (:data:`STRESS_UNITS`); default kBar.

    Returns
    -------
    list of Configuration
        ``positions`` (N, 3), Å, from ``structure.sites[k].xyz``; ``cell`` (3, 3), Å,
        from ``structure.lattice.matrix`` (rows), ``pbc`` from ``lattice.pbc`` (all
        True when absent); ``species`` the element symbols (str); ``energy`` eV;
        ``forces`` (N, 3), eV/Å; ``plus_stress`` (3, 3), eV, from ``outputs.virial_stress``
        or ``outputs.stress`` (kBar). Missing or empty outputs give ``None``. ``group``
        from ``group`` (else ``tag``, ``config_type``); ``features`` holds the entry's
        other scalar fields (``description``, ``tag``, ...).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        On invalid or too deeply nested JSON (naming the line), a top level that is not a
        non-empty list, or a malformed entry — missing keys, wrong lengths, values that are
        not JSON numbers (``true``, ``null`` or strings inside an array), non-finite
        numbers, an element that is not an element symbol, partially occupied or
        disordered sites, a ``num_atoms`` other than the number of sites, a ``pbc`` other
        than three booleans, a stress without a cell volume — naming the configuration
        index.
    ValueError
        If ``stress_order`` is not a permutation of xx yy zz yz xz xy, or ``stress_units`` not in
        :data:`STRESS_UNITS`.

    Warns
    -----
    StressOrderWarning
        When the file's sheared elastic cells contradict ``stress_order`` (see Notes), naming the file, the
        order used and the order the cells indicate. Files without such cells are not checked.

    Notes
    -----
    The order of the off-diagonal values differs between files of the same format.
    Both the sheared "Elastic" cells (the large shear stress sits on the sheared pair of
    axes) and the MTPs published with the benchmark (``mlearn/mtp_fitted``) show that
    the mlearn files of Ge, Li and Si and the MoNbTaW (maml) files follow VASP order
    xx yy zz xy yz xz, but the mlearn files of Cu, Mo and Ni have xz and yz swapped:
    pass ``stress_order="xx yy zz xy xz yz"`` for those. The sign is PlusStress's in
    all of them (compressed cells give positive diagonal values).

    The check: an entry marked as elastic (``group``, ``tag``, ``tags`` or ``config_type`` containing
    "elastic" or "strain") whose cell is sheared in exactly one plane, and whose largest shear stress is at
    least twice the other two, shows which of the six stored positions holds that plane. The planes' majority
    positions give the indicated order (its diagonal as in ``stress_order``). On the mlearn files this flags
    the Cu, Mo (training) and Ni files read in VASP order and the Ge, Li, Si files read with xz and yz
    swapped; the Mo test file has xy shears only, which both orders place alike, so it cannot be checked.
    """
    return _read_mlearn(path, _load_json(path), stress_order, stress_units)


def read_study_json(path: str | os.PathLike, stress_order: str | None = None,
                    stress_units: str | None = None) -> list[Configuration]:
    """Read the optimizer study's JSON: a list of ``{"sim": {...}, "weights": [...]}``.

    Each entry is ``{"sim": {"cfg": {"cell": (3, 3) Å rows, "pos": (N, 3) Å,
    "types": N ints}, "energy": eV, "forces": (N, 3) eV/Å, "stress": 6 values},
    "weights": [1 + 6 + 3N per-residual weights]}``, the weights laid out **[energy,
    stress (6, in the order of the stress values), forces (3N, atom by atom, x y z)]**.

    Parameters
    ----------
    path : str or os.PathLike
        ``.json`` or gzip-compressed ``.json.gz``.
    stress_order : str, optional
        Order of the six stress values (and of their weights); default (``None``) MLIP's
        xx yy zz yz xz xy (:data:`STRESS_CONVENTIONS`).
    stress_units : {"eV", "kBar"}, optional
        Default (``None``) eV: the values are the PlusStress itself, as the study's loss used
        them. Its MoNbTaW ``seed_validation.json`` holds VASP kBar in VASP order instead.

    Returns
    -------
    list of Configuration
        ``species`` the integer types; ``plus_stress`` (3, 3) in eV; ``weights``
        ``{"energy": w[0], "stress": w[1:7] re-ordered to the Voigt order xx yy zz yz xz xy
        of the Configuration, "forces": w[7:7+3N] as (N, 3) (row i = atom i's x y z)}``.
        Absent labels or weights give ``None``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        On invalid or too deeply nested JSON (naming the line), a top level that is not a
        non-empty list, or a malformed entry — missing keys, wrong lengths (``weights``
        must hold exactly 1 + 6 + 3N numbers), types that are not integers in
        0…:data:`~mtpfit.io.cfg.MAX_TYPE`, values that are not JSON numbers (``true`` is
        not 1), non-finite or negative values — naming the file and the configuration
        index.
    ValueError
        If ``stress_order`` is not a permutation of xx yy zz yz xz xy, or ``stress_units`` not in
        :data:`STRESS_UNITS`.

    Notes
    -----
    The stored weights are the residual weights of one configuration's squared
    residuals, the stress ones per Voigt component: the loss term they define is
    w[0]·ΔE² + Σ_v w_v·Δs_v² + Σ_ia w_ia·ΔF_ia², with Δs_v the six distinct PlusStress
    residuals (eV). On the study's Ag–Pd set they are w[0] = 1/N, 0.001/N on the
    diagonal and 2·0.001/N on the off-diagonal stress components (each appears twice in
    the Frobenius norm) and 0.01 on every force component: MLIP-2's default loss
    without its 1/K average. :class:`~mtpfit.objective.loss.Loss` with
    ``kind="file"`` uses them as they are.
    """
    return _read_study(path, _load_json(path), stress_order, stress_units)


def read_json(path: str | os.PathLike, stress_order: str | None = None,
              stress_units: str | None = None) -> list[Configuration]:
    """Read either JSON format, recognised by the keys of the first entry
    (``sim`` → study, ``structure`` → mlearn), each with its own stress convention unless
    ``stress_order``/``stress_units`` are given (:data:`STRESS_CONVENTIONS`; the
    :class:`StressOrderWarning` as in :func:`read_mlearn_json`).
    Raises :class:`FormatError` otherwise."""
    entries = _load_json(path)
    first = entries[0] if isinstance(entries[0], dict) else {}
    if "sim" in first:
        return _read_study(path, entries, stress_order, stress_units)
    if "structure" in first:
        return _read_mlearn(path, entries, stress_order, stress_units)
    raise FormatError(path, "unrecognised JSON: the entry has neither 'sim' (study format) "
                            "nor 'structure' (mlearn format)", index=0)


# ----------------------------------------------------------------------------- file level

def _load_json(path: str | os.PathLike) -> list:
    """The top-level list of a plain or gzip-compressed JSON file."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise FormatError(path, f"corrupt gzip data ({exc})") from None
    if not raw.strip():
        raise FormatError(path, "empty file")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not a text file ({exc.reason})") from None
    except RecursionError:
        raise FormatError(path, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more digits than int() converts
        raise FormatError(path, f"invalid JSON: {exc}") from None
    if not isinstance(data, list):
        raise FormatError(path, f"expected a JSON list of configurations, found "
                                f"{type(data).__name__}")
    if not data:
        raise FormatError(path, "no configuration (empty list)")
    return data


def _configurations(path: str | os.PathLike, entries: list,
                    parse: Callable[[object, str], Configuration]) -> list[Configuration]:
    configurations = []
    for index, entry in enumerate(entries):
        source = f"{os.fspath(path)}, configuration {index}"
        try:
            configurations.append(parse(entry, source))
        except (ValueError, TypeError) as exc:
            # Configuration's own messages already start with the source.
            raise FormatError(path, str(exc).removeprefix(f"{source}: "), index=index) from None
    return configurations


def _convention(kind: str, stress_order: str | None, stress_units: str | None) -> tuple[str, str]:
    """(units, order) of a JSON format, the given ones checked."""
    units, order = STRESS_CONVENTIONS[kind]
    units = units if stress_units is None else stress_units
    if units not in STRESS_UNITS:
        raise ValueError(f"stress units must be one of {', '.join(STRESS_UNITS)}, got {units!r}")
    order = order if stress_order is None else stress_order
    _parse_order(order)
    return units, order


def _read_study(path: str | os.PathLike, entries: list, stress_order: str | None,
                stress_units: str | None) -> list[Configuration]:
    units, order = _convention("study", stress_order, stress_units)
    components = _parse_order(order)
    voigt = [components.index(c) for c in _parse_order(MLIP_STRESS_ORDER)]
    return _configurations(path, entries,
                           lambda entry, source: _study_configuration(entry, source, components, voigt, units))


def _read_mlearn(path: str | os.PathLike, entries: list, stress_order: str | None,
                 stress_units: str | None) -> list[Configuration]:
    units, stress_order = _convention("mlearn", stress_order, stress_units)
    order = _parse_order(stress_order)
    configurations = _configurations(path, entries,
                                     lambda entry, source: _mlearn_configuration(entry, source, order, units))
    indicated = _indicated_order(entries, configurations, stress_order.split())
    if indicated is not None:
        used, shown, evidence = stress_order, " ".join(indicated[0]), indicated[1]
        warnings.warn(StressOrderWarning(
            f"{os.fspath(path)}: read with the stress order {used!r}, but its sheared elastic cells indicate "
            f"{shown!r}: {evidence}. The off-diagonal stresses read are in the wrong components; pass "
            f"stress_order={shown!r} (command line: --stress-order '{shown}')", used, shown), stacklevel=3)
    return configurations


def _indicated_order(entries: list, configurations: list[Configuration],
                     names: list[str]) -> tuple[list[str], str] | None:
    """The stress order the sheared elastic cells indicate and a summary of the evidence, when it differs from
    ``names`` (the order read with); None when it agrees or nothing decides."""
    found: dict[str, Counter] = {}
    example = {}
    for k, (entry, config) in enumerate(zip(entries, configurations)):
        plane = _sheared_plane(config) if _is_elastic(entry) else None
        if plane is None or config.plus_stress is None:
            continue
        shear = {p: abs(config.plus_stress[i, j]) for p, (i, j) in _SHEAR_PLANES.items()}
        largest, second = sorted(shear.values(), reverse=True)[:2]
        if not largest > _SHEAR_DOMINANCE * second:
            continue
        # the plane the given order put the largest value on: its stored position really holds `plane`
        read_as = max(shear, key=shear.get)
        found.setdefault(plane, Counter())[read_as] += 1
        example.setdefault((plane, read_as), k)
    indicated, claims = list(names), {}
    for plane, counts in found.items():
        read_as, n = counts.most_common(1)[0]
        if 2 * n <= sum(counts.values()):  # no majority: this plane decides nothing
            continue
        claims[plane] = names.index(read_as)
        here, there = indicated.index(plane), claims[plane]
        indicated[here], indicated[there] = indicated[there], indicated[here]
    if indicated == names or any(indicated[position] != plane for plane, position in claims.items()):
        return None  # agrees, or planes claim the same position (data that decide nothing)
    wrong = [(plane, read_as, n) for plane, counts in found.items() for read_as, n in counts.items()
             if read_as != plane]
    evidence = "; ".join(f"{n} of {sum(found[plane].values())} cells sheared in {plane} (e.g. configuration "
                         f"{example[plane, read_as]}) have their largest shear stress where that order reads {read_as}"
                         for plane, read_as, n in wrong)
    return indicated, evidence


def _is_elastic(entry) -> bool:
    values = []
    for key in _ELASTIC_FIELDS:
        value = entry.get(key)
        values += value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and _ELASTIC.search(v) for v in values)


def _sheared_plane(config: Configuration) -> str | None:
    """The plane a cell is sheared in, when its matrix is diagonal but for one plane's pair of entries."""
    cell = config.cell
    tolerance = _SHEAR_TOLERANCE * float(np.mean(np.abs(np.diag(cell))))
    sheared = [p for p, (i, j) in _SHEAR_PLANES.items() if max(abs(cell[i, j]), abs(cell[j, i])) > tolerance]
    return sheared[0] if len(sheared) == 1 else None


# ----------------------------------------------------------------------------- entries

def _field(obj, *keys: str):
    """``obj[k0][k1]...``; a ValueError naming the dotted key path when one is missing."""
    for depth, key in enumerate(keys):
        if not isinstance(obj, dict):
            raise ValueError(f"{'.'.join(keys[:depth]) or 'entry'} is not a JSON object")
        if key not in obj:
            raise ValueError(f"missing key {'.'.join(keys[:depth + 1])!r}")
        obj = obj[key]
    return obj


def _show(value) -> str:
    return json.dumps(value)[:40]


def _is_number(value) -> bool:
    """A JSON number: ``true`` is not 1 and ``"1.5"`` is not 1.5 (numpy takes both)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _array(value, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` as a finite float array of ``shape`` (-1 for any length), else a ValueError."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif not _is_number(item):
            raise ValueError(f"{name} holds {_show(item)}, not a number")
    try:
        array = np.array(value, dtype=float)
    except OverflowError:  # an integer beyond the float range
        raise ValueError(f"{name} holds a number beyond the float range") from None
    except ValueError:  # ragged
        raise ValueError(f"{name} is not an array of numbers") from None
    if array.ndim != len(shape) or any(s not in (-1, n) for s, n in zip(shape, array.shape)):
        wanted = " × ".join("N" if s == -1 else str(s) for s in shape)
        raise ValueError(f"{name} has shape {array.shape}, expected {wanted}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinity")
    return array


def _scalar(value, name: str) -> float | None:
    """A label that is a number or absent (``null``)."""
    if value is None:
        return None
    if not _is_number(value):
        raise ValueError(f"{name} is {_show(value)}, not a number")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} is beyond the float range") from None


def _label(value):
    """A label that may be missing: absent, null and [] all mean 'not labelled'."""
    return None if value is None or (isinstance(value, list) and not value) else value


def _parse_order(order: str) -> list[tuple[int, int]]:
    names = order.split()
    if sorted(names) != sorted(_COMPONENT):
        raise ValueError(f"stress order must name xx yy zz yz xz xy once each, got {order!r}")
    return [_COMPONENT[n] for n in names]


def _plus_stress(stored, cell: np.ndarray, order: list[tuple[int, int]], name: str, units: str):
    """The PlusStress (3, 3), eV, of six stored values in ``order`` and ``units`` (:data:`STRESS_UNITS`)."""
    values = _array(stored, (6,), name)
    with np.errstate(over="ignore", invalid="ignore"):
        volume = abs(np.linalg.det(cell))
    if not volume > 0.0:
        raise ValueError(f"{name} given but the cell has no volume")
    tensor = np.zeros((3, 3))
    for (i, j), value in zip(order, values):
        tensor[i, j] = tensor[j, i] = value
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused as non-finite by Configuration
        return tensor * (volume / KBAR_PER_EV_PER_A3) if units == "kBar" else tensor


def _mlearn_configuration(entry, source: str, order: list[tuple[int, int]], units: str) -> Configuration:
    lattice = _field(entry, "structure", "lattice")
    cell = _array(_field(lattice, "matrix"), (3, 3), "structure.lattice.matrix")
    sites = _field(entry, "structure", "sites")
    if not isinstance(sites, list):
        raise ValueError("structure.sites is not a list")
    if "num_atoms" in entry and (not _is_number(entry["num_atoms"]) or entry["num_atoms"] != len(sites)):
        raise ValueError(f"num_atoms is {_show(entry['num_atoms'])} but structure.sites has {len(sites)} sites")
    species = [_site_element(site, k) for k, site in enumerate(sites)]
    positions = _array([_field(site, "xyz") for site in sites], (-1, 3), "structure.sites.xyz")
    pbc = lattice.get("pbc", [True, True, True])
    if not (isinstance(pbc, list) and len(pbc) == 3 and all(isinstance(p, bool) for p in pbc)):
        raise ValueError(f"structure.lattice.pbc is {_show(pbc)}, not 3 booleans")
    outputs = entry.get("outputs")
    outputs = {} if outputs is None else outputs
    if not isinstance(outputs, dict):
        raise ValueError("outputs is not a JSON object")
    stress_key = next((k for k in ("virial_stress", "stress") if _label(outputs.get(k)) is not None), None)
    stress = (None if stress_key is None else
              _plus_stress(outputs[stress_key], cell, order, f"outputs.{stress_key}", units))
    forces = _label(outputs.get("forces"))
    group = next((entry[k] for k in ("group", "tag", "config_type") if entry.get(k)), None)
    features = {k: v for k, v in entry.items() if k not in _MLEARN_NOT_FEATURES
                and isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    return Configuration(
        positions=positions, species=np.array(species), cell=cell, pbc=pbc,
        energy=_scalar(outputs.get("energy"), "outputs.energy"),
        forces=None if forces is None else _array(forces, (len(sites), 3), "outputs.forces"),
        plus_stress=stress, group=None if group is None else str(group), source=source,
        features=features)


def _site_element(site, k: int) -> str:
    occupants = _field(site, "species")
    if not isinstance(occupants, list) or len(occupants) != 1:
        raise ValueError(f"structure.sites[{k}] is not occupied by exactly one species")
    element = _field(occupants[0], "element")
    if not isinstance(element, str) or element not in _ELEMENTS:  # null and 0 were species "None", "0"
        raise ValueError(f"structure.sites[{k}] has element {_show(element)}, not an element symbol")
    occupancy = occupants[0].get("occu", 1)
    if not _is_number(occupancy) or occupancy != 1:
        raise ValueError(f"structure.sites[{k}] has occupancy {_show(occupancy)}: only fully occupied sites "
                         "are atoms")
    return element


def _study_configuration(entry, source: str, order: list[tuple[int, int]], voigt: list[int],
                         units: str) -> Configuration:
    cell = _array(_field(entry, "sim", "cfg", "cell"), (3, 3), "sim.cfg.cell")
    positions = _array(_field(entry, "sim", "cfg", "pos"), (-1, 3), "sim.cfg.pos")
    n = len(positions)
    types = _field(entry, "sim", "cfg", "types")
    if not (isinstance(types, list) and len(types) == n and all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= MAX_TYPE for t in types)):
        raise ValueError(f"sim.cfg.types must be {n} non-negative integers (at most {MAX_TYPE}), "
                         f"found {_show(types)}")
    sim = entry["sim"]
    forces, stress = _label(sim.get("forces")), _label(sim.get("stress"))
    weights = _label(entry.get("weights"))
    if weights is not None:
        w = _array(weights, (-1,), "weights")
        if len(w) != 1 + 6 + 3 * n:
            raise ValueError(f"weights has {len(w)} values, expected 1 + 6 + 3N = {1 + 6 + 3 * n} for "
                             f"N = {n} atoms (energy, 6 stress, then 3N force weights)")
        weights = {"energy": w[0], "stress": w[1:7][voigt],
                   "forces": w[7:].reshape(n, 3)}
    return Configuration(
        positions=positions, species=np.array(types, dtype=np.int64), cell=cell,
        energy=_scalar(sim.get("energy"), "sim.energy"),
        forces=None if forces is None else _array(forces, (n, 3), "sim.forces"),
        plus_stress=None if stress is None else _plus_stress(stress, cell, order, "sim.stress", units),
        weights=weights, source=source)
