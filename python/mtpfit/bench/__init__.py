"""Optimizer studies: campaign grids, resumable execution on a process pool or Dask, validated result files,
aggregates and reports."""
from .campaign import Campaign, IdenticalSeedsWarning, load_campaign, spec_hash
from .execute import run_campaign
from .report import write_report
from .results import DamagedResultWarning, ResultFileError, read_result

__all__ = ["Campaign", "load_campaign", "spec_hash", "run_campaign", "write_report", "read_result",
           "ResultFileError", "DamagedResultWarning", "IdenticalSeedsWarning"]
