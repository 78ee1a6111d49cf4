"""scipy.optimize.minimize as a resumable trainer: its state is the log of the evaluations it asked for."""
from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.optimize

from ..objective.objective import Objective
from ..optim.result import OptimizationResult
from ..optim.state import ResumeError, check_resume
from ..potential.mtp import MTP

__all__ = ["TrainingRun", "scipy_minimize", "SCIPY_METHODS"]

#: scipy methods this trainer drives; Newton-CG and trust-krylov get Hessian–vector products
#: (:meth:`mtpfit.Objective.hessp`).
SCIPY_METHODS = ("BFGS", "L-BFGS-B", "CG", "Newton-CG", "trust-krylov")
_HESSP_METHODS = ("Newton-CG", "trust-krylov")


@dataclass
class TrainingRun:
    """Outcome of a training run.

    Attributes
    ----------
    mtp : MTP or ETN
        The trained potential (θ = ``result.x``), of the objective's model.
    result : scipy.optimize.OptimizeResult
        ``x``, ``fun``, ``nit``, ``nfev`` (passes over the training set, named by kind in
        :func:`~mtpfit.train.passes_summary`), ``success``, ``message``.
    history : list of dict
        One row per iteration: ``iteration``, ``elapsed_s``, ``loss``, the trainer's own columns and, every
        ``log_every`` iterations, ``train_epa_rmse`` (eV/atom) and ``train_force_rmse`` (eV/Å).
    wall_time : float
        Seconds spent in the optimizer (counting the time before a resume).
    errors : dict
        ``{"train": …, "validation": …}`` from :func:`mtpfit.metrics.error_metrics`.
    interrupted : bool
        True when stopped by a signal (SIGINT, SIGTERM) or Ctrl-C; θ is then the last completed iterate.
    config : TrainingConfig or None
        The settings, for a run of :func:`mtpfit.fit`.
    start : str
        The starting point (``resolve``, ``species``, ``none``, or ``by the trainer`` for those that re-solve
        their own), for a run of :func:`mtpfit.fit`; ``start_seconds`` the time it took, not in ``wall_time``.
    files : dict
        The files :func:`mtpfit.fit` wrote, by kind (``potential``, ``metrics``, ``history``, ``split``,
        ``predictions_train``, ``predictions_validation``, ``parity``, ``loss_curve``, ``config``).
    """

    mtp: MTP
    result: scipy.optimize.OptimizeResult
    history: list[dict] = field(default_factory=list)
    wall_time: float = 0.0
    errors: dict = field(default_factory=dict)
    interrupted: bool = False
    config: object = None
    start: str = ""
    start_seconds: float = 0.0
    files: dict = field(default_factory=dict)


def scipy_minimize(objective: Objective, x0: np.ndarray, method: str = "BFGS", max_iter: int = 1000,
                   gtol: float = 1e-8, time_limit: float | None = None, callback: Callable | None = None,
                   resume: dict | None = None) -> OptimizationResult:
    """Minimise the objective with :func:`scipy.optimize.minimize`, resumably.

    scipy keeps its state (BFGS's inverse Hessian, L-BFGS-B's memory, the line search's last step) to itself, so
    the state of this trainer is the log of every evaluation scipy asked for: the loss and gradient (and
    Hessian–vector products) with a digest of each point. A resumed run calls scipy again from ``x0`` and answers
    its requests from the log, without passes over the data, as long as each requested point has the digest
    logged for it: scipy's deterministic arithmetic then retraces the saved run bit for bit and rebuilds its
    internal state, and the run continues on the trajectory of an uninterrupted one. The log costs 8·n_params
    bytes per evaluation, in memory and in the checkpoint.

    Parameters
    ----------
    objective : Objective
        Loss over the training set.
    x0 : ndarray, shape (n_params,)
        Starting θ (a resume needs the same).
    method : {"BFGS", "L-BFGS-B", "CG", "Newton-CG", "trust-krylov"}
    max_iter : int
        Iteration limit (scipy's ``maxiter``).
    gtol : float
        Gradient-norm tolerance (scipy's ``gtol``; ``xtol`` for Newton-CG).
    time_limit : float, optional
        Wall-time budget (s, counting the time before a resume): the run stops after the first iteration that
        ends past it, with ``success=False`` and the message "wall-time budget of … s reached".
    callback : callable, optional
        ``callback(intermediate_result)`` after every iteration (``x``, ``fun``, ``nit`` and ``state``, a function
        returning the resumable state); raising StopIteration stops the run.
    resume : dict, optional
        A ``state`` from the callback.

    Returns
    -------
    OptimizationResult
        scipy's fields (``hess_inv`` of BFGS, ``njev``, …), with ``nfev`` the loss+gradient passes made
        (equivalent full passes, counting those before a resume), ``history`` (``iteration``, ``elapsed_s``,
        ``loss``, ``passes``) and ``wall_time``.

    Raises
    ------
    ValueError
        For an unsupported method.
    ResumeError
        If ``resume`` does not fit (another trainer's state, an iteration beyond ``max_iter``).
    FloatingPointError
        When the loss becomes non-finite (naming the iteration).

    Warns
    -----
    RuntimeWarning
        When a resumed run does not retrace the saved one (another numerical environment): it continues, from
        where it departed, on a different trajectory.
    """
    if method not in SCIPY_METHODS:
        raise ValueError(f"unknown scipy method {method!r}; choose from {SCIPY_METHODS}")
    x0 = np.array(x0, dtype=float)
    start = time.perf_counter()
    replay_to, saved = 0, None
    if resume is not None:
        check_resume(resume, {"nit": None, "history": None, "elapsed_s": None, "passes": None, "x": x0.shape,
                              "log": None}, method)
        replay_to, saved = resume["nit"], resume
        if not isinstance(replay_to, int) or not 0 <= replay_to <= max_iter:
            raise ResumeError(f"{method}: the saved run is at iteration {replay_to!r}, outside the {max_iter} "
                              f"iterations of this run")
        start -= float(resume["elapsed_s"])
    log = _EvaluationLog(objective, None if saved is None else saved["log"])
    history: list[dict] = []
    run = {"iteration": 0, "passes_base": objective.passes}

    def passes():
        return objective.passes - run["passes_base"]

    def record(intermediate_result):
        run["iteration"] += 1
        it, x, loss = run["iteration"], np.array(intermediate_result.x), float(intermediate_result.fun)
        if it <= replay_to:
            if it == replay_to:
                _check_replay(method, log, x, saved)
                history[:] = saved["history"]
                run["passes_base"] = objective.passes - saved["passes"]
            return
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at iteration {it}")
        elapsed = time.perf_counter() - start
        history.append({"iteration": it, "elapsed_s": elapsed, "loss": loss, "passes": passes()})
        if callback is not None:
            snapshot = {"nit": it, "history": list(history), "elapsed_s": elapsed, "passes": passes(), "x": x}
            length = len(log)
            try:
                callback(OptimizationResult(x=x, fun=loss, nit=it,
                                            state=lambda: {**snapshot, "log": log.arrays(length)}))
            except StopIteration:
                run["stopped"] = True
                raise
        if time_limit is not None and elapsed >= time_limit:
            run["budget"] = True
            raise StopIteration

    options = {"maxiter": int(max_iter), "gtol": gtol}
    if method == "Newton-CG":
        options = {"maxiter": int(max_iter), "xtol": gtol}
    hessp = log.hessp if method in _HESSP_METHODS else None
    result = scipy.optimize.minimize(log.fun_and_jac, x0, jac=True, hessp=hessp, method=method, options=options,
                                     callback=record)
    if run["iteration"] < replay_to:
        history[:] = saved["history"]   # scipy stopped before the saved iteration: it retraced nothing new
    if run.get("budget"):
        # scipy says "`callback` raised `StopIteration`" (and success False): say why
        result.message, result.success = f"wall-time budget of {time_limit:g} s reached", False
    elif run.get("stopped"):
        result.message, result.success = f"stopped by the callback after {run['iteration']} iterations", False
    if not np.isfinite(result.fun):
        raise FloatingPointError(f"training ended with a non-finite loss ({result.fun}); θ is not usable")
    out = OptimizationResult(**result)      # scipy's own fields too (BFGS's hess_inv, njev, status)
    out.update(fun=float(result.fun), nit=int(result.nit), nfev=passes(), history=history,
               wall_time=time.perf_counter() - start)
    return out


def _check_replay(method, log, x, saved):
    if log.departed is not None or not np.array_equal(x, saved["x"]):
        where = f"evaluation {log.departed}" if log.departed is not None else f"iteration {saved['nit']}"
        warnings.warn(f"{method}: the resumed run departs from the saved one at {where} (another numerical "
                      "environment?); it continues from there, not bit for bit", RuntimeWarning, stacklevel=4)


def _digest(*arrays) -> np.ndarray:
    digest = hashlib.blake2b(digest_size=16)
    for a in arrays:
        digest.update(np.ascontiguousarray(a, dtype=float).tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint8)


class _EvaluationLog:
    """The objective's answers to scipy, in order; a saved log is replayed while scipy asks for the same points."""

    _FUN, _HESSP = 0, 1

    def __init__(self, objective, saved=None):
        self.objective = objective
        self.kinds, self.keys, self.values, self.vectors = [], [], [], []
        self.replayable = 0
        self.position = 0
        self.departed = None
        if saved is not None:
            check_resume(saved, {"kinds": None, "keys": None, "values": None, "vectors": None}, "evaluation log")
            m = len(saved["kinds"])
            check_resume(saved, {"keys": (m, 16), "values": (m,), "vectors": (m, objective.n_params)},
                         "evaluation log")
            self.kinds, self.keys = [int(k) for k in saved["kinds"]], list(saved["keys"])
            self.values, self.vectors = list(saved["values"]), list(saved["vectors"])
            self.replayable = m

    def __len__(self):
        return len(self.kinds)

    def _answer(self, kind, key, compute):
        if self.position < self.replayable:
            if self.kinds[self.position] == kind and np.array_equal(self.keys[self.position], key):
                self.position += 1
                return self.values[self.position - 1], self.vectors[self.position - 1].copy()
            # a point the saved run never asked for: the rest of the log belongs to another trajectory
            self.departed = self.position
            del self.kinds[self.position:], self.keys[self.position:]
            del self.values[self.position:], self.vectors[self.position:]
            self.replayable = self.position
        value, vector = compute()
        self.kinds.append(kind)
        self.keys.append(key)
        self.values.append(value)
        self.vectors.append(np.array(vector, dtype=float))
        self.position += 1
        return value, np.array(vector, dtype=float)

    def fun_and_jac(self, x):
        return self._answer(self._FUN, _digest(x), lambda: self.objective.fun_and_jac(x))

    def hessp(self, x, p):
        return self._answer(self._HESSP, _digest(x, p), lambda: (0.0, self.objective.hessp(x, p)))[1]

    def arrays(self, length: int) -> dict:
        """The first ``length`` entries as arrays, for a checkpoint."""
        n = self.objective.n_params
        return {"kinds": np.array(self.kinds[:length], dtype=np.int8),
                "keys": np.array(self.keys[:length], dtype=np.uint8).reshape(length, 16),
                "values": np.array(self.values[:length], dtype=float),
                "vectors": np.array(self.vectors[:length], dtype=float).reshape(length, n)}
