"""BLAS threads: the engine's matrices are a few hundred wide, so threading them gains
nothing, and OpenBLAS threads that spin against other busy processes turned a 20 ms
factorisation into seconds, and a 1.4 ms solve into 7 ms, in measurements here.

numpy and scipy each bring their own OpenBLAS; `threadpoolctl` limits only the libraries
already loaded, so both are imported before any limit is set.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager

__all__ = ["limit_blas_threads", "single_threaded_blas"]


@functools.cache
def _blas_controller():
    """The loaded BLAS libraries, scanned once (the scan is the slow part, ~0.3-7 ms)."""
    import numpy  # noqa: F401 - loads numpy's OpenBLAS
    import scipy.linalg  # noqa: F401 - loads scipy's, a second library
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


@contextmanager
def single_threaded_blas():
    """Run BLAS/LAPACK on one thread inside the block (entering costs ~12 us, so even
    single solves are wrapped)."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


@functools.cache
def limit_blas_threads():
    """One BLAS thread for the rest of the process, for a process that is ours (``smp``,
    ``smp-gui``): set once (idempotent), kept by the limiter this returns.  In the GUI a
    threaded BLAS in the worker competes with the GUI thread for the cores and makes both
    slower (measured 3x on 2 cores)."""
    return _blas_controller().limit(limits=1, user_api="blas")
