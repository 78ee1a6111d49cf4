"""What every study writes: a table as CSV and Markdown, and figures drawn without a display."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = ["write_table", "pyplot"]


def write_table(rows: list[dict], out: str | Path, stem: str) -> None:
    """``stem.csv`` and ``stem.md`` in ``out``: one line per row, the columns of the first row; floats in the
    Markdown with 4 significant digits, in the CSV at full precision."""
    out = Path(out)
    columns = list(rows[0])
    with open(out / f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    def cell(v):
        return "—" if v is None else f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only; works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
