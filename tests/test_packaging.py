"""What the wheel ships: the C++ sources the LAMMPS plugin is built from (mtpfit.lammps) are the ones CMake
installs into the package."""
import re
from pathlib import Path

from mtpfit.lammps import SOURCE_FILES

ROOT = Path(__file__).parents[1]


def test_cmake_installs_exactly_the_plugin_sources():
    text = (ROOT / "CMakeLists.txt").read_text()
    shipped = set()
    for files, destination in re.findall(r"install\(FILES\s+(.*?)\s+DESTINATION\s+(\S+)\)", text, re.S):
        assert destination.startswith("mtpfit/_cpp")
        sub = destination[len("mtpfit/_cpp"):].strip("/")
        shipped |= {str(Path(sub) / Path(f).name) if sub else Path(f).name for f in files.split()}
    assert shipped == set(SOURCE_FILES)
    assert all((ROOT / "cpp" / name).is_file() for name in SOURCE_FILES)
