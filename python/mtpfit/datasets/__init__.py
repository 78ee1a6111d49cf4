"""Real DFT datasets shipped with the package (with their licences)."""
from __future__ import annotations

from importlib import resources

from ..data.dataset import Dataset

__all__ = ["BUNDLED", "load_bundled"]

#: name → (folder, training file, test file, species, suggested min_dist and cutoff in Å)
BUNDLED = {
    "mlearn-Mo": ("mlearn_Mo", "training.json.gz", "test.json.gz", ["Mo"], 2.0, 5.2),
}

#: The mlearn Mo file stores its shear stresses as xy xz yz, not VASP's xy yz xz: the sheared
#: "Elastic" cells and the published MTP both show it (SOURCE.txt).
_STRESS_ORDER = {"mlearn-Mo": "xx yy zz xy xz yz"}


def load_bundled(name: str = "mlearn-Mo") -> tuple[Dataset, Dataset]:
    """The published training and test split of a bundled dataset.

    Parameters
    ----------
    name : str
        A key of :data:`BUNDLED`. ``"mlearn-Mo"``: the Mo set of the mlearn benchmark
        (Zuo et al., J. Phys. Chem. A 124, 731 (2020); BSD-3), 194 training and 23 test
        configurations with energies, forces and stresses.

    Returns
    -------
    train, test : Dataset

    Raises
    ------
    KeyError
        For an unknown name.
    """
    from ..io import read_mlearn_json

    if name not in BUNDLED:
        raise KeyError(f"no bundled dataset {name!r}; available: {sorted(BUNDLED)}")
    folder, train_file, test_file, *_ = BUNDLED[name]
    root = resources.files(__package__) / folder
    out = []
    for file, part in ((train_file, "training"), (test_file, "test")):
        with resources.as_file(root / file) as path:
            out.append(Dataset(read_mlearn_json(path, stress_order=_STRESS_ORDER[name]), f"{name} {part}"))
    return out[0], out[1]
