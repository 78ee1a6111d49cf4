"""Running a campaign's unfinished runs on a local process pool or a Dask cluster."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

from .campaign import Campaign
from ..metrics import shown
from .results import DamagedResultWarning
from .runner import run_and_save, training_config

__all__ = ["run_campaign"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Initializer of the pool's workers: a worker ends when the process that started it ends, even by SIGKILL,
    and leaves Ctrl-C to that process (which then ends the workers itself).

    On Linux the kernel sends the worker SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``): at once, with
    no Python thread that would need the interpreter. Elsewhere a daemon thread polls the parent's pid. SIGKILL,
    not SIGTERM, and SIGINT ignored: a trainer that stops cleanly on a signal would return early, and the worker
    would save the unfinished run as a result.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        # the signal comes when the *thread* that started the worker ends: ProcessPoolExecutor starts workers
        # from the thread that submits runs, the one in run_campaign, which outlives the pool
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the lifeline was set
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _line(summary: dict) -> str:
    head = f"{summary['label']:<24} seed {summary['seed']:<4} {summary['wall_time_s']:8.1f} s  "
    if summary["val_epa_rmse"] is None and summary["val_force_rmse"] is None:
        return head + summary["message"]
    return (head + f"val EPA RMSE {shown(summary['val_epa_rmse'], '9.3f', 'meV/atom', 1e3)}  force RMSE "
            f"{shown(summary['val_force_rmse'], '.4f', 'eV/Å')}")


def run_campaign(campaign: Campaign, workers: int | None = None, dask: str | None = None,
                 progress: Callable[[str], None] | None = print) -> list[dict]:
    """Run every run of ``campaign`` that has no valid result file yet: never run, unfinished when a campaign was
    killed, or with a damaged file (each named by a :class:`~mtpfit.bench.results.DamagedResultWarning`).

    Workers of the local process pool end with the process that runs the campaign, even when it is killed
    (SIGKILL); so do the workers of a local Dask cluster (Dask's own lifeline). On Ctrl-C the runs in progress
    are stopped, not saved: they run again next time.

    Parameters
    ----------
    workers : int, optional
        Parallel runs. Default: cores // threads_per_run, so cores are not oversubscribed.
    dask : str, optional
        ``"local"`` for a local Dask cluster of ``workers`` processes, or a scheduler address
        (``tcp://host:8786``) of a running cluster; default: a local process pool.
    progress : callable or None
        Receives one line per finished run; a tqdm bar tracks the campaign when progress is on.

    Returns
    -------
    list of dict
        Summaries of the runs made now (finished runs are skipped, so a killed campaign resumes).

    Raises
    ------
    ValueError
        Before any run starts, when the trainer refuses the settings of an unfinished run (each such run named).
    Exception
        The first failing run's error, after the other submitted runs have finished and been saved.
    """
    pending = campaign.pending()
    # a refused setting would otherwise stop the campaign when its turn comes, hours into it
    refused = []
    for spec in pending:
        try:
            training_config(spec, None, None)
        except ValueError as err:
            refused.append(str(err))
    if refused:
        raise ValueError(f"{campaign.path}: the trainer refuses the settings of {len(refused)} run(s), so none "
                         "was started:\n  " + "\n  ".join(refused))
    damaged = campaign.damaged()
    for path, why in damaged.items():
        warnings.warn(f"{path}: damaged result file ({why}); its run is done again", DamagedResultWarning,
                      stacklevel=2)
    say = progress or (lambda line: None)
    threads = max(1, int(campaign.runs[0].get("threads", 1))) if campaign.runs else 1
    workers = workers or max(1, (os.cpu_count() or 1) // threads)
    say(f"campaign {campaign.name}: {len(campaign.runs)} runs, {len(campaign.runs) - len(pending)} done, "
        f"{len(pending)} to run{f' ({len(damaged)} damaged)' if damaged else ''} on {workers} worker(s) "
        f"({'dask ' + dask if dask else 'process pool'}); results in {campaign.results}")
    if not pending:
        return []
    jobs = [(spec, str(campaign.path.parent), str(campaign.result_path(spec))) for spec in pending]
    bar = None
    if progress is not None:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=campaign.name, unit="run")
    summaries, failure = [], None

    def collect(future_result):
        nonlocal failure
        try:
            summary = future_result()
        except Exception as err:  # keep the finished runs; report the first failure at the end
            failure = failure or err
            return
        summaries.append(summary)
        if bar is not None:
            bar.write(_line(summary))
            bar.update()

    if dask:
        from distributed import Client, LocalCluster
        from distributed import as_completed as dask_completed

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) if dask == "local" else None
        try:
            with Client(cluster if cluster else dask) as client:
                for future in dask_completed([client.submit(run_and_save, *job, pure=False) for job in jobs]):
                    collect(future.result)
        finally:
            if cluster:
                cluster.close()
    else:
        _run_on_pool(jobs, workers, collect)
    if bar is not None:
        bar.close()
    if failure:
        raise failure
    return summaries


def _run_on_pool(jobs: list[tuple], workers: int, collect: Callable) -> None:
    """The jobs on a local process pool whose workers die with this process; on any exception here (Ctrl-C),
    the workers are killed at once instead of finishing their runs (and, since they ignore SIGINT, the rest)."""
    before = set(multiprocessing.active_children())
    # spawn: an OpenMP runtime does not survive fork()
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        for future in as_completed([pool.submit(run_and_save, *job) for job in jobs]):
            collect(future.result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in set(multiprocessing.active_children()) - before:
            worker.kill()
        raise
    pool.shutdown()
