"""The out-of-core pipeline on Dask: same tiles, same arithmetic, same results as :mod:`fencli.stream`.

* the cube is a ``dask.array`` read by window (a picklable path-backed reader, so workers on other
  machines read the file themselves; the shared file system is assumed);
* the FEN and local detectors are ``map_overlap`` with the same halos and ``boundary='none'`` (no
  halo at true scene borders, where the model's own reflect pad is the scene's);
* GRX statistics are a reduction of per-chunk float64 :class:`~fencli.detectors.RXStats`;
* SLRX runs per block-aligned tile (one delayed task each), normalized globally at the end;
* a batch is one task per scene (see :func:`fencli.batch.run_batch`).

Dask is an optional extra (``fencli[dask]``): nothing imports this module unless asked to.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fencli.detectors import SLRX_RIDGE, RXStats, slrx_block_size, slrx_combine, slrx_full_whitener
from fencli.errors import FencliError
from fencli.pipeline import check_size, detector
from fencli.preprocess import band_count, checked_range
from fencli.stream import FenFn, StreamResult, fen_block, lrx_halo, lrx_outer, slrx_tile_maps
from fencli.tiles import FEN_HALO, RawCube, create_raw, default_tile, finite_range, grid, npy_header, open_cube, split


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError:
        raise FencliError("--engine dask needs Dask: pip install 'fencli[dask]'") from None
    return dask, da


@contextmanager
def dask_client(scheduler: str | None = None, workers: int = 1, threads: int | None = None) -> Iterator[Any]:
    """A client of ``scheduler`` (address of a running dask.distributed scheduler), or of a new
    in-process ``LocalCluster`` (threads: ONNX Runtime and BLAS release the GIL)."""
    _dask()
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise FencliError("--engine dask needs dask.distributed: pip install 'fencli[dask]'") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as err:
            raise FencliError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
        with client:
            yield client
        return
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    with LocalCluster(processes=False, n_workers=workers, threads_per_worker=threads,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


class PathCube:
    """A picklable ``H x W x B`` array-like over a C-ordered ``.npy``: each ``[...]`` reads one window."""

    ndim = 3

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        shape, self.dtype, _, _ = npy_header(path)
        self.shape = tuple(shape)

    def __getitem__(self, idx: tuple[slice, ...]) -> np.ndarray:
        (r0, r1, _), (c0, c1, _), (b0, b1, _) = (s.indices(n) for s, n in zip(idx, self.shape))
        if r1 <= r0 or c1 <= c0:
            return np.empty((max(0, r1 - r0), max(0, c1 - c0), max(0, b1 - b0)), self.dtype)
        with open_cube(self.path) as cube:
            return cube.window(r0, r1, c0, c1)[:, :, b0:b1]

    def __setitem__(self, idx: tuple[slice, ...], value: np.ndarray) -> None:
        (r0, _, _), (c0, _, _), _ = (s.indices(n) for s, n in zip(idx, self.shape))
        shape, dtype, _, offset = npy_header(self.path)
        with RawCube(self.path, shape, dtype, offset, writable=True) as cube:
            cube.write(r0, c0, value)


def _as_dask(source: Any, bands: int, tile: int, align: int = 1):
    """The cube's first ``bands`` bands as a dask array chunked like :func:`fencli.tiles.grid`."""
    _, da = _dask()
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() == ".npy" and not npy_header(source)[2]:
        src: Any = PathCube(source)
    elif isinstance(source, (str, Path)):
        src = open_cube(source).source
    else:
        src = source
    h, w = src.shape[:2]
    chunks = (tuple(b - a for a, b in split(h, tile, align)), tuple(b - a for a, b in split(w, tile, align)),
              (src.shape[2],))
    arr = da.from_array(src, chunks=chunks, meta=np.empty((0, 0, 0), src.dtype), lock=not isinstance(src, np.ndarray))
    return arr[:, :, :bands].rechunk({2: -1})


def _block_stats(block: np.ndarray) -> tuple[RXStats, float, float]:
    return (RXStats(block.shape[-1]).fit(block), *finite_range(block))


def _merge(*parts: tuple[RXStats, float, float]) -> tuple[RXStats, float, float]:
    stats = RXStats(parts[0][0].bands)
    for s, _, _ in parts:
        stats.merge(s)
    return stats, min(p[1] for p in parts), max(p[2] for p in parts)


def _stats(arr):
    """Delayed (float64 statistics, min, max) of all pixels: one task per chunk, then a merge."""
    dask, _ = _dask()
    parts = [dask.delayed(_block_stats)(b) for b in arr.to_delayed().ravel()]
    return dask.delayed(_merge)(*parts)


def _fen_chunk(block: np.ndarray, fen: FenFn, vrange: tuple[float, float]) -> np.ndarray:
    return fen_block(block, fen, vrange)


def _grx_chunk(block: np.ndarray, stats: RXStats) -> np.ndarray:
    return stats.score(block)


def _local_chunk(block: np.ndarray, detect: Any, vrange: tuple[float, float], options: dict) -> np.ndarray:
    return np.asarray(detect(block, vrange=vrange, **options), dtype=np.float64)


def detect_dask(source: Any, method: str = "grx", *, fen: FenFn | None = None, bands: int | None = None,
                tile: int | None = None, options: dict[str, Any] | None = None,
                workdir: str | Path | None = None) -> StreamResult:
    """:func:`fencli.stream.detect_stream` as a Dask graph, computed on the current client (or
    Dask's default scheduler when none is set)."""
    dask, da = _dask()
    options = dict(options or {})
    detect = detector(method)  # an unknown method fails before any task runs
    cube = (PathCube(source) if isinstance(source, (str, Path)) and Path(source).suffix.lower() == ".npy"
            else open_cube(source))
    shape = tuple(int(s) for s in cube.shape)
    h, w, nb = shape
    b = band_count(nb, bands)
    check_size(cube)
    tile = max(tile or (default_tile(b) if fen is not None else 256), 2 * FEN_HALO)
    tmp = None
    try:
        arr = _as_dask(source, b, tile)
        if fen is not None:
            if hasattr(fen, "for_scene"):  # the adaptive FEN: ConvH from the scene's statistics, same pass
                (in_stats, lo, hi), = dask.compute(_stats(arr))
                checked_range(lo, hi)
                fen = fen.for_scene(in_stats, (lo, hi))
            else:
                lo, hi = checked_range(*(float(v) for v in dask.compute(arr.min(), arr.max())))
            y = arr.map_overlap(partial(_fen_chunk, fen=fen, vrange=(lo, hi)), depth={0: FEN_HALO, 1: FEN_HALO, 2: 0},
                                boundary="none", trim=True, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
            tmp = tempfile.TemporaryDirectory(prefix="fencli-dask-", dir=workdir)
            path = Path(tmp.name) / "enhanced.npy"
            create_raw(path, (h, w, b), np.float32).close()
            store = da.store(y, PathCube(path), lock=False, compute=False)
            _, (stats, lo, hi) = dask.compute(store, _stats(y))
            checked_range(lo, hi, "the FEN output")
            src: Any = path
        else:
            (stats, lo, hi), = dask.compute(_stats(arr))
            checked_range(lo, hi)
            src = source
        if method == "grx":
            det = _as_dask(src, b, tile)
            stats.set_range((lo, hi)).whitener()  # factor once, before the tasks share it
            scores = det.map_blocks(partial(_grx_chunk, stats=stats), drop_axis=2,
                                    dtype=np.float64, meta=np.empty((0, 0))).compute()
        elif method == "slrx":
            bs = slrx_block_size(b, options.get("block_size"), options.get("block_num", 25))
            det = _as_dask(src, b, tile)
            ridge = options.get("ridge", SLRX_RIDGE)
            white = slrx_full_whitener(stats.set_range((lo, hi)).covariance, ridge)
            tiles = grid(h, w, max(tile, bs), bs, align=bs)
            jobs = [dask.delayed(slrx_tile_maps)(det[t.ext[0]:t.ext[1], t.ext[2]:t.ext[3]], t, (lo, hi), stats,
                                                 white, bs, ridge) for t in tiles]
            maps = np.empty((3, h, w))
            for t, m in zip(tiles, dask.compute(*jobs)):
                maps[:, t.core[0]:t.core[1], t.core[2]:t.core[3]] = m
            scores = slrx_combine(maps)
        elif method == "lrx":
            scores = tiled_local_dask(src, detect, lrx_halo(**options), bands=b,
                                      tile=max(tile, lrx_outer(**options)), vrange=(lo, hi), **options)
        else:
            raise FencliError(f"method {method!r} has no out-of-core version yet")
        return StreamResult(np.asarray(scores), method, b, shape, {})
    finally:
        if tmp is not None:
            tmp.cleanup()


def tiled_local_dask(source: Any, detect: Any, halo: int, *, bands: int | None = None, tile: int = 256,
                     vrange: tuple[float, float] | None = None, **options: Any) -> np.ndarray:
    """Any local detector through ``map_overlap`` (the Dask twin of :func:`fencli.stream.tiled_local`)."""
    dask, _ = _dask()
    arr = _as_dask(source, bands or source.shape[2], max(tile, halo))
    if vrange is None:
        vrange = tuple(float(v) for v in dask.compute(arr.min(), arr.max()))
    return arr.map_overlap(partial(_local_chunk, detect=detect, vrange=vrange, options=options),
                           depth={0: halo, 1: halo, 2: 0}, boundary="none", trim=True, drop_axis=2,
                           dtype=np.float64, meta=np.empty((0, 0))).compute()
