"""Clean stops: SIGINT (Ctrl-C) and SIGTERM ask a training run to stop at its next step."""
from __future__ import annotations

import contextlib
import signal
import threading

import numpy as np

__all__ = ["StopSignals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Catches SIGINT and SIGTERM while active (a context manager; main thread only, elsewhere it does nothing).

    Inside :meth:`training` the first signal is only recorded: the trainer, which asks this object (it is the
    ``stop`` callable of :func:`~mtpfit.train.train_full_batch` and :func:`~mtpfit.train.minibatch.train_minibatch`)
    after every step, then stops there with its checkpoint and outputs written. A second signal raises
    KeyboardInterrupt at once (the trainers then stop inside the step, at the previous one). Outside
    :meth:`training` a signal raises KeyboardInterrupt, as Python's default Ctrl-C does, for SIGTERM too.

    Parameters
    ----------
    comm : communicator, optional
        With several MPI ranks, :meth:`__call__` agrees over them (one all-reduce), so every rank stops at the
        same step.
    """

    def __init__(self, comm=None):
        self.comm = comm
        self.received: str | None = None
        self._armed = False
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for number in _SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
        return False

    @contextlib.contextmanager
    def training(self):
        """While in this block, the first signal asks for a stop at the next step instead of interrupting."""
        self._armed = True
        try:
            yield self
        finally:
            self._armed = False

    def __call__(self) -> str | None:
        """The name of the signal received (``"SIGINT"``, ``"SIGTERM"``), or None."""
        if self.comm is not None and self.comm.size > 1:
            anywhere = self.comm.allreduce(np.array([1.0 if self.received else 0.0]))[0] > 0
            if anywhere and self.received is None:
                self.received = "a signal (on another MPI rank)"
        return self.received

    def _handle(self, number, frame) -> None:
        if not self._armed or self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(number).name
