"""The result object every optimizer returns: scipy's, plus history and wall time."""
from __future__ import annotations

import scipy.optimize

__all__ = ["OptimizationResult"]


class OptimizationResult(scipy.optimize.OptimizeResult):
    """:class:`scipy.optimize.OptimizeResult` with the fields every mtpfit optimizer fills.

    Attributes
    ----------
    x : ndarray, shape (n_params,)
        Final θ (for Schedule-Free: the averaged sequence x).
    fun : float
        Loss at ``x`` (full training set).
    nit : int
        Iterations (optimizer steps).
    nfev : int
        Loss+gradient passes over the full training set or, for mini-batch methods, their equivalent in
        configurations (passes = configurations evaluated / training-set size).
    success : bool
    message : str
    history : list of dict
        One row per step or epoch (``step``, ``epoch``, ``loss``, ``elapsed_s``, validation errors …).
    wall_time : float
        Seconds.
    """
