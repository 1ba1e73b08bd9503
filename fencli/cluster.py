"""Dask as an executor of the engine's passes: the same plan as a local run, its tiles as tasks.

Each pass of :mod:`fencli.engine` maps one function over its tiles; :class:`DaskExecutor` submits
those calls to a ``dask.distributed`` client and hands the results back in tile order. Tasks read
their windows themselves (a ``.npy`` scene travels as its path, so workers on other machines read
the file; a shared file system is assumed) and the FEN travels as a picklable handle that loads the
model in each worker. A batch is one task per scene (:func:`fencli.batch.run_batch`).

Dask is an optional extra (``fencli[dask]``): nothing imports this module unless asked to.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from fencli.errors import FencliError


class DaskExecutor:
    """Runs a pass's tasks on a ``dask.distributed`` client, results yielded in submission order."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        futures = self.client.map(fn, list(items), pure=False)
        try:
            for fut in futures:
                yield fut.result()
        finally:
            self.client.cancel(futures)  # a failed tile stops the pass's other tasks


@contextmanager
def dask_client(scheduler: str | None = None, workers: int = 1, threads: int | None = None,
                processes: bool = False) -> Iterator[Any]:
    """A client of ``scheduler`` (address of a running dask.distributed scheduler), or of a new
    ``LocalCluster`` (threads by default: ONNX Runtime and BLAS release the GIL)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise FencliError("--engine dask needs Dask: pip install 'fencli[dask]'") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as err:
            raise FencliError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
        with client:
            yield client
        return
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    with LocalCluster(processes=processes, n_workers=workers, threads_per_worker=threads,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client

