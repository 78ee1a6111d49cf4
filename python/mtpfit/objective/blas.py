"""One BLAS thread for the dense linear algebra between the core's passes.

The core's passes run on OpenMP threads that take every core they are given. The BLAS behind NumPy and SciPy
(OpenBLAS in their wheels) starts its own worker threads, and after each call they keep spinning for a while before
they sleep: on a machine with as many cores as core threads, the next pass then shares its cores with them.
Measured on 2 cores (crystals_multi[:100], level 20, 2 core threads): one variable-projection evaluation (linear
system, a 292 × 292 least-squares solve, one loss+gradient pass) took 0.368 s with OpenBLAS's default 2 threads and
0.321 s with one; the solve itself is about 10 ms either way. The dense problems of training (the linear solve
of S + M coefficients, LM's damped normal equations, BFGS updates) are a few hundred to a few thousand unknowns,
small next to a pass.
"""
from __future__ import annotations

from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None


def single_threaded_blas():
    """Context manager: BLAS calls inside run on one thread (threadpoolctl; nested uses are fine).

    Returns
    -------
    contextlib.AbstractContextManager
        Restores the previous BLAS thread counts on exit.
    """
    global _controller
    if _controller is None:          # inspecting the loaded libraries costs about a millisecond: once
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
