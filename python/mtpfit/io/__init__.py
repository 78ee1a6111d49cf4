"""Reading and writing labelled configurations: MLIP ``.cfg``, mlearn and study JSON,
DeePMD-kit ``deepmd/npy`` folders (through dpdata), and anything ASE reads. Every reader
returns :class:`~mtpfit.data.configuration.Configuration` objects in Å, eV, eV/Å, with the
stress as PlusStress (eV), and raises :class:`FormatError` naming the file and line (or
configuration) on malformed input."""
from .ase_formats import read_ase
from .cfg import read_cfg, write_cfg
from .deepmd import read_deepmd
from .errors import FormatError
from .json_formats import StressOrderWarning, read_json, read_mlearn_json, read_study_json
from .read import read_configurations, read_files
from .write import write_predictions

__all__ = ["FormatError", "read_configurations", "read_files", "read_cfg", "write_cfg", "read_mlearn_json",
           "read_study_json", "read_json", "read_ase", "read_deepmd", "write_predictions", "StressOrderWarning"]
