"""Running a campaign's unfinished runs on a local process pool or a Dask cluster."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

from .campaign import Campaign
from .runner import run_and_save

__all__ = ["run_campaign"]


def _line(summary: dict) -> str:
    head = f"{summary['label']:<24} seed {summary['seed']:<4} {summary['wall_time_s']:8.1f} s  "
    if summary["val_epa_rmse"] is None:
        return head + summary["message"]
    return (head + f"val EPA RMSE {1e3 * summary['val_epa_rmse']:9.3f} meV/atom  force RMSE "
            f"{summary['val_force_rmse']:.4f} eV/Å")


def run_campaign(campaign: Campaign, workers: int | None = None, dask: str | None = None,
                 progress: Callable[[str], None] | None = print) -> list[dict]:
    """Run every run of ``campaign`` that has no result file yet.

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
    Exception
        The first failing run's error, after the other submitted runs have finished and been saved.
    """
    pending = campaign.pending()
    say = progress or (lambda line: None)
    threads = max(1, int(campaign.runs[0].get("threads", 1))) if campaign.runs else 1
    workers = workers or max(1, (os.cpu_count() or 1) // threads)
    say(f"campaign {campaign.name}: {len(campaign.runs)} runs, {len(campaign.runs) - len(pending)} done, "
        f"{len(pending)} to run on {workers} worker(s) ({'dask ' + dask if dask else 'process pool'})")
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

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) if dask == "local" else None
        with Client(cluster if cluster else dask) as client:
            futures = [client.submit(run_and_save, *job, pure=False) for job in jobs]
            from distributed import as_completed as dask_completed

            for future in dask_completed(futures):
                collect(future.result)
        if cluster:
            cluster.close()
    else:
        # spawn: an OpenMP runtime does not survive fork()
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(run_and_save, *job) for job in jobs]):
                collect(future.result)
    if bar is not None:
        bar.close()
    if failure:
        raise failure
    return summaries
