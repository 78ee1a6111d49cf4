"""The README's Python example runs as written."""
import re
from pathlib import Path

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
