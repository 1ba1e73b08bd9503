"""The out-of-core pipeline: tiled FEN and streaming RX detectors on scenes of any size.

Memory is bounded by the tile and chunk sizes, never by the scene: the FEN runs on tiles with a
halo (see :mod:`fencli.tiles`), its output goes to a temporary ``.npy`` on disk by tile, and the
detectors stream over that file. Results equal the in-memory pipeline's:

* FEN: the model is pointwise except layer1's three 3x3 convs (receptive radius 3), so a tile with
  4 real halo pixels on each inner side gives exact cores; at true borders the model's own reflect
  pad is the scene's. The ``supp`` variant's division by the global Frobenius norm is a positive
  global scale: every detector here min-max normalizes first, which cancels it, so the detectors
  take the plain output; :func:`tiled_fen` applies the norm in a second pass when the enhanced cube
  itself is written.
* GRX: :class:`fencli.detectors.RXStats` accumulated by chunk (Chan's pairwise merge), then scores by chunk.
* SLRX: :func:`fencli.detectors.slrx_raw_maps` on block-aligned tiles with a one-block halo, full-image
  statistics streamed first, each map min-max normalized over the whole scene at the end.
* LRX and any local detector: tiles with a halo of the outer window radius, the global value range
  passed in so each tile is normalized as the whole scene would be.

What stays in memory: one tile and its FEN activations (:func:`fencli.tiles.default_tile` sizes them
from the available memory), float64 chunks of about 64 MB, and the ``H x W`` float64 score maps
(three for SLRX): 32 MB per map at 2000 x 2000, 96 MB at 600 x 20,000. Passes over the data: FE+GRX
reads the input twice (range, FEN) and the enhanced cube once; raw GRX reads the input twice.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fencli.detectors import SLRX_RIDGE, RXStats, slrx_block_size, slrx_combine, slrx_full_whitener, slrx_raw_maps
from fencli.errors import FencliError
from fencli.pipeline import check_size, detector
from fencli.preprocess import band_count, checked_range, fen_input, minmax01
from fencli.tiles import (FEN_HALO, Cube, RawCube, Tile, create_raw, default_tile, finite_range, grid, iter_rows,
                          open_cube, stream_range)

FenFn = Callable[[np.ndarray], np.ndarray]  # 1 x B x h x w preprocessed float32 -> 1 x B x h x w
Progress = Callable[[int], None]  # called with the number of pixels just finished


@dataclass
class FenPass:
    """What one tiled FEN pass learns about its output on the way: value range, statistics, norm."""

    lo: float = math.inf
    hi: float = -math.inf
    sumsq: float = 0.0
    stats: RXStats | None = None
    seconds: float = 0.0

    def add(self, y: np.ndarray) -> None:
        self.lo, self.hi = min(self.lo, float(y.min())), max(self.hi, float(y.max()))
        y64 = y.astype(np.float64).reshape(-1, y.shape[-1])
        self.sumsq += float(np.einsum("ij,ij->", y64, y64))
        if self.stats is None:
            self.stats = RXStats(y.shape[-1])
        self.stats.update(y64)


def fen_block(block: np.ndarray, fen: FenFn, vrange: tuple[float, float]) -> np.ndarray:
    """FEN output ``h x w x B`` float32 of one raw block (tile plus halo)."""
    y = fen(fen_input(block, vrange))  # the scene's range, not the tile's
    return np.ascontiguousarray(np.asarray(y)[0].transpose(1, 2, 0), dtype=np.float32)


def tiled_fen(cube: Cube, fen: FenFn, out: RawCube, *, bands: int, vrange: tuple[float, float],
              tile: int | None = None, supp_norm: bool = False,
              progress: Progress | None = None) -> FenPass:
    """Run ``fen`` over ``cube[:, :, :bands]`` tile by tile into ``out`` (``H x W x bands`` float32).

    Returns the output's range and float64 statistics (before any ``supp`` norm). With
    ``supp_norm`` the written cube is divided by its global Frobenius norm in a second pass.
    """
    h, w, _ = cube.shape
    tile = tile or default_tile(bands)
    acc = FenPass()
    t0 = time.perf_counter()
    for t in grid(h, w, tile, FEN_HALO):
        y = fen_block(cube.window(*t.ext, bands), fen, vrange)[t.crop]
        out.write(t.core[0], t.core[2], y)
        acc.add(y)
        if progress:
            progress(y.shape[0] * y.shape[1])
    if supp_norm:
        scale_rows(out, 1.0 / math.sqrt(acc.sumsq))
    acc.seconds = time.perf_counter() - t0
    return acc


def scale_rows(raw: RawCube, factor: float) -> None:
    """Multiply a file-backed cube by ``factor`` in place, by row chunk."""
    for r0, block in iter_rows(raw, chunk=None):
        raw.write(r0, 0, (block * np.float32(factor)).astype(raw.dtype))


def stream_stats(cube: Cube, bands: int | None = None) -> tuple[RXStats, float, float]:
    """Raw-value statistics and (min, max) of ``cube[:, :, :bands]`` in one pass."""
    stats, lo, hi = None, math.inf, -math.inf
    for _, block in iter_rows(cube, bands):
        blo, bhi = finite_range(block)
        lo, hi = min(lo, blo), max(hi, bhi)
        if stats is None:
            stats = RXStats(block.shape[-1])
        stats.update(block)
    return (stats, *checked_range(lo, hi))


def stream_grx(cube: Cube, bands: int | None = None, *, stats: RXStats | None = None,
               vrange: tuple[float, float] | None = None, progress: Progress | None = None) -> np.ndarray:
    """GRX of a cube of any size: statistics in one pass (skipped when given), scores in a second."""
    if stats is None or vrange is None:
        stats, *vrange = stream_stats(cube, bands)
    stats.set_range(vrange)  # scores are in the detectors' [0, 1] units
    h, w, _ = cube.shape
    scores = np.empty((h, w))
    for r0, block in iter_rows(cube, bands):
        scores[r0:r0 + block.shape[0]] = stats.score(block)
        if progress:
            progress(block.shape[0] * w)
    return scores


def tiled_local(cube: Cube, detect: Callable[..., np.ndarray], halo: int, *, bands: int | None = None,
                tile: int = 256, vrange: tuple[float, float] | None = None,
                progress: Progress | None = None, **options: Any) -> np.ndarray:
    """A local detector (window radius <= ``halo``) run tile by tile: ``detect(block, vrange=..., **options)``."""
    vrange = vrange or stream_range(cube, bands)
    h, w, _ = cube.shape
    scores = np.empty((h, w))
    for t in grid(h, w, max(tile, 1), halo):
        scores[t.core_slices] = np.asarray(detect(cube.window(*t.ext, bands), vrange=vrange, **options))[t.crop]
        if progress:
            progress((t.core[1] - t.core[0]) * (t.core[3] - t.core[2]))
    return scores


def lrx_halo(**options: Any) -> int:
    """Tile halo of the dual-window LRX: the outer window's radius (default from :func:`detectors.lrx`).

    LRX shifts windows to stay inside the image (Spectral Python's rule) and cuts them to an image
    smaller than the window, so tiles must also be at least ``outer`` px: see :func:`lrx_tile`.
    """
    return lrx_outer(**options) // 2


def lrx_outer(**options: Any) -> int:
    import inspect

    from fencli.detectors import lrx

    return int(options.get("outer", inspect.signature(lrx).parameters["outer"].default))


# --- SLRX -------------------------------------------------------------------------------------

def slrx_tile_maps(block: np.ndarray, tile: Tile, vrange: tuple[float, float], stats: RXStats,
                   full_whitener: np.ndarray, bs: int, ridge: float = SLRX_RIDGE) -> np.ndarray:
    """:func:`fencli.detectors.slrx_raw_maps` of one block-aligned tile (``block`` = its raw extent)
    with the whole scene's range and statistics (``stats`` in [0, 1] units)."""
    x = minmax01(block, vrange)
    x -= stats.mean
    r0, r1, c0, c1 = tile.core
    e0, _, f0, _ = tile.ext
    return slrx_raw_maps(x, bs, full_whitener, ridge, core=(r0 - e0, r1 - e0, c0 - f0, c1 - f0))


def tiled_slrx(cube: Cube, bands: int | None = None, *, block_size: int | None = None,
               block_num: int = 25, ridge: float = SLRX_RIDGE, tile: int = 256, stats: RXStats | None = None,
               vrange: tuple[float, float] | None = None, progress: Progress | None = None) -> np.ndarray:
    """SLRX of a cube of any size: full-image statistics streamed, raw maps on block-aligned tiles
    with a one-block halo, global normalization of the three maps at the end."""
    h, w, b = cube.shape
    b = bands or b
    bs = slrx_block_size(b, block_size, block_num)
    if stats is None or vrange is None:
        stats, *vrange = stream_stats(cube, b)
    stats.set_range(vrange)
    white = slrx_full_whitener(stats.covariance, ridge)
    maps = np.empty((3, h, w))
    for t in grid(h, w, max(tile, bs), bs, align=bs):
        r0, r1, c0, c1 = t.core
        maps[:, r0:r1, c0:c1] = slrx_tile_maps(cube.window(*t.ext, b), t, vrange, stats, white, bs, ridge)
        if progress:
            progress((r1 - r0) * (c1 - c0))
    return slrx_combine(maps)


# --- the FEN of an ONNX Runtime session, per tile ----------------------------------------------

def session_tile_fen(session: Any) -> FenFn:
    """The per-tile FEN of a :class:`fencli.runtime.FENSession`: its raw forward pass on a
    preprocessed tile. A ``supp`` model divides by the norm of whatever it is given (each tile its
    own), so for tiles it runs the same graph with that last division cut off (see :func:`_pre_norm`)."""
    if getattr(session.info, "variant", "plain") != "supp":
        return session.run
    import onnxruntime as ort

    from fencli.runtime import session_options

    cut = ort.InferenceSession(_pre_norm(session.path, session.info.output_name),
                               session_options(session.threads), providers=session.session.get_providers())
    name = session.info.input_name
    return lambda x: cut.run(None, {name: x})[0]


def enhancer_tile_fen(enhancer: Any, picklable: bool = False, device: str | None = None) -> Any:
    """The per-tile FEN of an enhancer (None for None): a session's raw pass (:func:`session_tile_fen`),
    with ``picklable`` a :class:`SessionTileFen` handle for Dask workers (on ``device``, default the
    session's); the adaptive FEN is its own picklable handle (``for_scene``): its ConvH needs the
    scene's statistics first."""
    if enhancer is None or hasattr(enhancer, "for_scene"):
        return enhancer
    if picklable:
        return SessionTileFen(str(enhancer.path), device or enhancer.device, enhancer.threads)
    return session_tile_fen(enhancer)


class SessionTileFen:
    """The per-tile FEN of a model file as a picklable callable: the session (and for ``supp`` the
    cut graph) is made on first use in each process, so Dask workers anywhere load it themselves."""

    _cache: dict[tuple, FenFn] = {}

    def __init__(self, path: str, device: str = "auto", threads: int | None = None) -> None:
        self.path, self.device, self.threads = str(path), device, threads

    def __call__(self, x: np.ndarray) -> np.ndarray:
        key = (self.path, self.device, self.threads)
        fn = self._cache.get(key)
        if fn is None:
            from fencli.runtime import get_session

            fn = self._cache[key] = session_tile_fen(get_session(self.path, self.device, self.threads))
        return fn(x)


def _pre_norm(path: str | Path, output: str) -> bytes:
    """The ONNX graph with its output moved to the numerator of the final ``Div`` (the supp norm)."""
    try:
        import onnx
    except ImportError:
        raise FencliError("tiling a supp model needs the onnx package (pip install onnx), or use --tile 0") from None
    model = onnx.load(str(path))
    g = model.graph
    last = next((n for n in g.node if output in n.output), None)
    if last is None or last.op_type != "Div":
        raise FencliError(f"{path}: cannot find the supp norm (a final Div) to tile this model")
    out = g.output[0]
    new = onnx.helper.make_tensor_value_info(last.input[0], out.type.tensor_type.elem_type, None)
    g.output.remove(out)
    g.output.append(new)
    return model.SerializeToString()


# --- the driver -------------------------------------------------------------------------------

@dataclass
class StreamResult:
    """Scores of one scene from the out-of-core pipeline, with per-stage seconds."""

    scores: np.ndarray
    method: str
    bands: int
    shape: tuple[int, int, int]
    seconds: dict[str, float] = field(default_factory=dict)


def detect_stream(source: Any, method: str = "grx", *, fen: FenFn | None = None, bands: int | None = None,
                  tile: int | None = None, workdir: str | Path | None = None,
                  options: dict[str, Any] | None = None, progress: Progress | None = None) -> StreamResult:
    """Detect anomalies in a scene of any size with bounded memory (the out-of-core :func:`pipeline.run`).

    ``source``: a path or an ``H x W x bands`` array-like (memmap, h5py dataset, ndarray).
    ``fen``: the per-tile FEN (:func:`enhancer_tile_fen`), or None for raw detection; one with a
    ``for_scene(stats, vrange)`` method (the adaptive FEN) is first fitted to the scene's raw
    statistics, gathered in the same pass as the value range. The FEN output goes to a temporary
    file in ``workdir``, removed afterwards (a ``supp`` norm is left out: every detector's own
    min-max cancels it). ``progress(n)`` is called as pixels finish each pass: ``H * W`` in all,
    twice that with a FEN.
    """
    options = dict(options or {})
    detect = detector(method)  # an unknown method fails before any pass over the data
    cube = open_cube(source)
    h, w, nb = cube.shape
    b = band_count(nb, bands)
    check_size(cube)
    seconds: dict[str, float] = {"enhance": 0.0}
    tmp = None
    try:
        det_cube, stats, vrange = cube, None, None
        if fen is not None:
            t0 = time.perf_counter()  # "enhance" = the streaming min/max pass + the tiled FEN
            if hasattr(fen, "for_scene"):  # the adaptive FEN: ConvH from the scene's statistics, same pass
                in_stats, *bounds = stream_stats(cube, b)
                in_range = (bounds[0], bounds[1])
                fen = fen.for_scene(in_stats, in_range)
            else:
                in_range = stream_range(cube, b)
            tmp = tempfile.TemporaryDirectory(prefix="fencli-", dir=workdir)
            det_cube = create_raw(Path(tmp.name) / "enhanced.npy", (h, w, b), np.float32)
            acc = tiled_fen(cube, fen, det_cube, bands=b, vrange=in_range, tile=tile, progress=progress)
            seconds["enhance"] = time.perf_counter() - t0
            checked_range(acc.lo, acc.hi, "the FEN output")
            stats, vrange = acc.stats, (acc.lo, acc.hi)
        t0 = time.perf_counter()
        if method == "grx":
            scores = stream_grx(det_cube, b if fen is None else None, stats=stats, vrange=vrange, progress=progress)
        elif method == "slrx":
            scores = tiled_slrx(det_cube, b if fen is None else None, stats=stats, vrange=vrange,
                                tile=tile or 256, progress=progress, **options)
        elif method == "lrx":
            scores = tiled_local(det_cube, detect, lrx_halo(**options), bands=b if fen is None else None,
                                 tile=max(tile or 256, lrx_outer(**options)), vrange=vrange, progress=progress,
                                 **options)
        else:
            raise FencliError(f"method {method!r} has no out-of-core version yet")
        seconds["detect"] = time.perf_counter() - t0
        return StreamResult(scores, method, b, (h, w, nb), seconds)
    finally:
        if det_cube is not cube:
            det_cube.close()
        cube.close()
        if tmp is not None:
            tmp.cleanup()
