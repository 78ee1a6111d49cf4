import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True, scope="session")
def _two_threads():
    # the tests assume nothing about the machine's core count
    os.environ.setdefault("OMP_NUM_THREADS", "2")


def shared_path(*parts) -> Path:
    """A path under ../shared, skipping the test when that folder is absent (fresh clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"dataset-scale check needs {path}, absent on this machine (../shared not present)")
    return path
