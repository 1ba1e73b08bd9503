"""Threads and BLAS in one place: how many worker threads the detectors use, and OpenBLAS held to
one thread while they run.

SLRX and LRX do hundreds of small BLAS/LAPACK calls (200 x 200 matrices) from one worker thread
per core; OpenBLAS's own threads on top of those cost more than they gain (measured 4-60x slower
with 2 threads on a 2-core machine under load). Sums split in two fixed halves of the rows give the
same bits on any core count.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fencli.errors import FencliError

_BLAS_LOCK = threading.Lock()
_blas_limit: list = []  # [threadpoolctl limiter, nesting depth] while some thread holds the limit
_CONTROLLERS: dict[bool, Any] = {}
_MAX_THREADS: list[int | None] = [None]  # set by limit_threads (the CLI's --threads)


def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, kept: finding them costs 1 ms a call.
    SciPy brings its own OpenBLAS, so the view is taken again once it is loaded."""
    key = "scipy.linalg" in sys.modules
    if key not in _CONTROLLERS:
        from threadpoolctl import ThreadpoolController

        _CONTROLLERS[key] = ThreadpoolController()
    return _CONTROLLERS[key]


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS/LAPACK on one thread inside. Every BLAS loaded on entry is limited (SLRX imports SciPy's
    first). The limit is process-wide, so concurrent callers (Dask tiles) share it: the first sets
    it, the last one out restores the original."""
    with _BLAS_LOCK:
        if not _blas_limit:
            _blas_limit[:] = [_blas_controller().limit(limits=1, user_api="blas"), 0]
        _blas_limit[1] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_limit[1] -= 1
            if _blas_limit[1] == 0:
                _blas_limit[0].restore_original_limits()
                _blas_limit.clear()


def limit_threads(threads: int | None) -> None:
    """At most ``threads`` worker threads for the detectors in this process (None: one per core)."""
    if threads is not None and threads < 1:
        raise FencliError(f"--threads must be at least 1, got {threads}")
    _MAX_THREADS[0] = threads


@contextmanager
def threads_limited(threads: int | None) -> Iterator[None]:
    """:func:`limit_threads` inside only (None: leave the limit as it is); the previous limit after."""
    if threads is None:
        yield
        return
    before = _MAX_THREADS[0]
    limit_threads(threads)
    try:
        yield
    finally:
        _MAX_THREADS[0] = before


def cores() -> int:
    """Worker threads for the detectors: the CPUs this process may run on, at most :func:`limit_threads`'s."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cpus, _MAX_THREADS[0] or cpus)


def on_halves(fn: Any, rows: int) -> list:
    """``[fn(0, rows // 2), fn(rows // 2, rows)]``, on two threads where there are two cores: a sum
    over the parts has the same bits on any machine and with any :func:`limit_threads`."""
    edges = (0, rows // 2, rows)
    return (parallel if cores() > 1 else lambda f, *a: list(map(f, *a)))(fn, edges[:-1], edges[1:])


def parallel(fn: Any, *args: Any) -> list:
    """``map(fn, *args)`` on one thread per item; the items' NumPy, BLAS and LAPACK calls release the
    GIL. The first item's error is raised after every thread ends. Plain threads: ``concurrent.futures``
    costs 8 ms to import."""
    items = list(zip(*args))
    results: list = [None] * len(items)
    errors: list[BaseException | None] = [None] * len(items)

    def run(i: int) -> None:
        try:
            results[i] = fn(*items[i])
        except BaseException as e:  # re-raised on the calling thread below
            errors[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        if e is not None:
            raise e
    return results
