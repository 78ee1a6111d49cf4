"""The long run of the reader fuzz suite (issue 14): ≥ 10⁵ mutated files per format, each batch in a subprocess.

The generators and checks are those of ``tests/test_fuzz_readers.py`` (real seed files, the same mutations, the same
validation and must-refuse rules). Case ``i`` of a format is drawn from ``random.Random(f"{format}:{seed}:{i}")``, so
every case can be rebuilt alone. A worker subprocess runs a batch of cases and prints one JSON line per case; the
parent reads them and counts, per format:

* parsed-valid, refused (the documented error naming the file: ``FormatError``, ``ValueError`` for the TOML files);
* crashes: the worker died (a signal, or an exit) during a case; the case is counted and the batch goes on after it;
* hangs: no answer within ``--timeout`` seconds; the worker is killed, the case counted, the batch goes on;
* leaked exception types (anything else raised, ``MemoryError`` included: workers run under an address-space limit
  of ``--memory`` GiB so that a blow-up is counted instead of exhausting the machine), documented errors that do
  not name the file, parsed objects that fail validation, and silent acceptances by mutation class.

Usage (from the repository root; exit status 1 when anything but parsed-valid and refused occurred)::

    PYTHONPATH=python python benchmarks/fuzz_readers.py --cases 100000
    PYTHONPATH=python python benchmarks/fuzz_readers.py --cases 10000 --formats cfg mtp --json fuzz.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import select
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_fuzz_readers import FORMATS, mutate, outcome, scratch_folder  # noqa: E402

PROBLEMS = ("crash", "hang", "leak", "unnamed", "invalid", "silent")


def case_rng(fmt: str, seed: int, i: int) -> random.Random:
    return random.Random(f"{fmt}:{seed}:{i}")


# ----------------------------------------------------------------------------- worker

def work(fmt: str, seed: int, start: int, stop: int, memory_gib: float, folder: Path) -> None:
    """Run cases start … stop-1 in ``folder``, one JSON line each on stdout."""
    limit = int(memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for i in range(start, stop):
        mutation = mutate(fmt, case_rng(fmt, seed, i))
        result = outcome(fmt, mutation.data, folder)
        kind = "silent" if mutation.must_refuse and result.kind == "valid" else result.kind
        record = {"i": i, "kind": kind, "class": mutation.kind, "must": mutation.must_refuse}
        if kind in PROBLEMS:
            record.update(label=mutation.label, detail=result.detail)
        print(json.dumps(record), flush=True)


# ----------------------------------------------------------------------------- parent

class Counts:
    """What happened to the cases of one format."""

    def __init__(self):
        self.kinds = Counter()       # valid, refused and the problems
        self.must_refuse = 0         # cases whose mutation the format forbids
        self.leaks = Counter()       # exception type → cases
        self.silent = Counter()      # mutation class → cases
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, detail: str = "", mutation_class: str = "", label: str = "", must: bool = False) -> None:
        self.kinds[kind] += 1
        self.must_refuse += must
        if kind == "leak":
            self.leaks[detail.split(":")[0]] += 1
        if kind == "silent":
            self.silent[mutation_class] += 1
        if kind in PROBLEMS and len(self.examples.setdefault(kind, [])) < 5:
            self.examples[kind].append(f"{label}: {detail}"[:300])

    def merge(self, other: "Counts") -> None:
        self.kinds += other.kinds
        self.must_refuse += other.must_refuse
        self.leaks += other.leaks
        self.silent += other.silent
        for kind, examples in other.examples.items():
            self.examples[kind] = (self.examples.get(kind, []) + examples)[:5]


def run_batch(fmt: str, seed: int, start: int, stop: int, timeout: float, memory_gib: float) -> Counts:
    """Cases start … stop-1 of ``fmt`` in worker subprocesses, a new one after each crash or hang. The files are
    written in a folder of the parent's, so that a killed worker leaves nothing behind."""
    with scratch_folder() as folder:
        return _run_cases(fmt, seed, start, stop, timeout, memory_gib, folder)


def _run_cases(fmt: str, seed: int, start: int, stop: int, timeout: float, memory_gib: float, folder: str) -> Counts:
    counts, i = Counts(), start
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    while i < stop:
        command = [sys.executable, __file__, "--worker", fmt, str(seed), str(i), str(stop), "--memory", str(memory_gib),
                   "--folder", folder]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env) as proc:
            buffer = b""
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], timeout)
                if not ready:
                    proc.kill()
                    counts.add("hang", f"no answer in {timeout:g} s", label=mutate(fmt, case_rng(fmt, seed, i)).label)
                    i += 1
                    break
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    code = proc.wait()
                    if i < stop:  # died in case i
                        counts.add("crash", f"exit status {code}", label=mutate(fmt, case_rng(fmt, seed, i)).label)
                        i += 1
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    record = json.loads(line)
                    counts.add(record["kind"], record.get("detail", ""), record["class"], record.get("label", ""),
                               record["must"])
                    i = record["i"] + 1
    return counts


def run(formats: list[str], cases: int, seed: int, batch: int, jobs: int, timeout: float,
        memory_gib: float) -> dict[str, Counts]:
    results = {fmt: Counts() for fmt in formats}
    batches = [(fmt, start, min(start + batch, cases)) for fmt in formats for start in range(0, cases, batch)]
    with ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(run_batch, fmt, seed, start, stop, timeout, memory_gib): fmt
                   for fmt, start, stop in batches}
        for future, fmt in futures.items():
            results[fmt].merge(future.result())
    return results


def report(results: dict[str, Counts], seconds: float) -> str:
    header = ("format", "cases", "parsed-valid", "refused", "crashes", "hangs", "leaked", "unnamed", "invalid",
              "must-refuse", "silent")
    rows = [header]
    for fmt, c in results.items():
        k = c.kinds
        rows.append((fmt, str(sum(k.values())), str(k["valid"]), str(k["refused"]), str(k["crash"]), str(k["hang"]),
                     str(k["leak"]), str(k["unnamed"]), str(k["invalid"]), str(c.must_refuse), str(k["silent"])))
    widths = [max(len(r[j]) for r in rows) for j in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if j else cell.ljust(w) for j, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.append(f"({seconds:.0f} s; refused: FormatError, or ValueError for the TOML loaders, naming the file; "
                 "must-refuse: cases whose mutation the format forbids, of which silent were accepted)")
    for fmt, c in results.items():
        if c.leaks:
            lines.append(f"{fmt}: leaked exception types: {dict(c.leaks)}")
        if c.silent:
            lines.append(f"{fmt}: silent acceptances by mutation class: {dict(c.silent)}")
        for kind, examples in c.examples.items():
            lines += [f"{fmt}: {kind}: {e}" for e in examples]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases per format (default 100000)")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--seed", type=int, default=0, help="seeds every case (default 0)")
    parser.add_argument("--batch", type=int, default=5000, help="cases per worker subprocess (default 5000)")
    parser.add_argument("--jobs", type=int, default=2, help="batches run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one case may take (default 30)")
    parser.add_argument("--memory", type=float, default=4.0, help="address-space limit of a worker, GiB")
    parser.add_argument("--json", type=Path, help="also write the counts to this file")
    parser.add_argument("--worker", nargs=4, metavar=("FORMAT", "SEED", "START", "STOP"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        fmt, seed, start, stop = args.worker
        work(fmt, int(seed), int(start), int(stop), args.memory, args.folder)
        return 0
    start = time.perf_counter()
    results = run(args.formats, args.cases, args.seed, args.batch, args.jobs, args.timeout, args.memory)
    print(report(results, time.perf_counter() - start))
    if args.json:
        args.json.write_text(json.dumps({fmt: {"counts": dict(c.kinds), "must_refuse": c.must_refuse,
                                               "leaked": dict(c.leaks),
                                               "silent": dict(c.silent), "examples": c.examples}
                                         for fmt, c in results.items()}, indent=1))
    return int(any(c.kinds[p] for c in results.values() for p in PROBLEMS))


if __name__ == "__main__":
    sys.exit(main())
