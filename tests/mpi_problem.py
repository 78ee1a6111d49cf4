"""The small problem the MPI tests solve with 1, 2 and 4 ranks: level 08, 3 species, 100 MLIP-2 frames (MIT)."""
from pathlib import Path

from mtpfit import MTP, Dataset
from mtpfit.io import read_cfg

DATA = Path(__file__).parent / "data"


def problem():
    data = Dataset(read_cfg(DATA / "mlip2" / "level08_multi" / "train100.cfg"), "train100")
    mtp = MTP.from_level(8, species=[0, 1, 2])
    return mtp, data, mtp.init_params(0.1, 3)
