"""Plot validation EPA and force RMSE against training time from benchmarks/time_to_accuracy.py records.

    python benchmarks/plot_time_to_accuracy.py OUT.png RECORD.json [RECORD.json ...] [--title TITLE]

One line per record (labelled by its trainer), EPA RMSE (meV/atom) and force RMSE (eV/Å) on log axes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("records", nargs="+")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for path in args.records:
        record = json.loads(Path(path).read_text())
        rows = [r for r in record["rows"] if r["train_s"] > 0]
        t = [r["train_s"] for r in rows]
        label = f"{record['trainer']} ({record['threads']} thr.)"
        left.plot(t, [1e3 * r["epa_rmse"] for r in rows], marker=".", label=label)
        right.plot(t, [r["force_rmse"] for r in rows], marker=".", label=label)
    for ax, name in ((left, "validation EPA RMSE (meV/atom)"), (right, "validation force RMSE (eV/Å)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training wall time (s)")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    left.legend()
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
