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
* GRX: mean and scatter accumulated in float64 by chunk (Chan's pairwise merge), then scores by chunk.
* SLRX: raw block/surround/full distance maps on block-aligned tiles with a one-block halo, full-image
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

from fencli.errors import FencliError
from fencli.preprocess import FEN_SCALE
from fencli.tiles import FEN_HALO, Cube, RawCube, Tile, create_raw, default_tile, grid, iter_rows, open_cube, stream_range

FenFn = Callable[[np.ndarray], np.ndarray]  # 1 x B x h x w preprocessed float32 -> 1 x B x h x w
Progress = Callable[[int], None]  # called with the number of pixels just finished
SLRX_RIDGE = 1e-6


class RXStats:
    """Mean and scatter of pixel vectors accumulated in float64, chunk by chunk.

    Chunks merge by Chan et al.'s pairwise formula, so the result does not depend on how the
    scene was cut (up to rounding) and partial results from parallel workers combine exactly.
    """

    def __init__(self, bands: int) -> None:
        self.n = 0
        self.mean = np.zeros(bands)
        self.m2 = np.zeros((bands, bands))

    @classmethod
    def of(cls, x: np.ndarray) -> "RXStats":
        x = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
        s = cls(x.shape[1])
        s.n = x.shape[0]
        s.mean = x.mean(axis=0)
        xc = x - s.mean
        s.m2 = xc.T @ xc
        return s

    def update(self, x: np.ndarray) -> "RXStats":
        return self.merge(RXStats.of(x))

    def merge(self, other: "RXStats") -> "RXStats":
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mean, self.m2 = other.n, other.mean.copy(), other.m2.copy()
            return self
        n = self.n + other.n
        delta = other.mean - self.mean
        self.m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        self.mean = self.mean + delta * (other.n / n)
        self.n = n
        return self

    def cov(self) -> np.ndarray:
        """Unbiased covariance (divide by n - 1), as the reference's ``np.cov``."""
        return self.m2 / max(self.n - 1, 1)

    def affine(self, lo: float, hi: float) -> "RXStats":
        """Statistics of ``(x - lo) / (hi - lo)``: the detectors' min-max to [0, 1]."""
        s = RXStats(len(self.mean))
        s.n, s.mean, s.m2 = self.n, (self.mean - lo) / (hi - lo), self.m2 / (hi - lo) ** 2
        return s


@dataclass
class GRXScorer:
    """``(x - mu)^T pinv(S) (x - mu)`` with the same pinv cutoff as :func:`fencli.detectors.grx`."""

    mean: np.ndarray
    white: np.ndarray

    @classmethod
    def fit(cls, stats: RXStats) -> "GRXScorer":
        evals, evecs = np.linalg.eigh(stats.cov())
        keep = evals > 1e-15 * evals.max()
        return cls(stats.mean, evecs[:, keep] / np.sqrt(evals[keep]))

    def score(self, x01: np.ndarray) -> np.ndarray:
        shape = x01.shape[:-1]
        w = (np.asarray(x01, np.float64).reshape(-1, x01.shape[-1]) - self.mean) @ self.white
        return np.einsum("ij,ij->i", w, w).reshape(shape)


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
        s = RXStats.of(y64)
        self.stats = s if self.stats is None else self.stats.merge(s)


def fen_tile_input(block: np.ndarray, vrange: tuple[float, float]) -> np.ndarray:
    """``h x w x B`` raw block -> ``1 x B x h x w`` float32 in [-0.1, 0.1] with the scene's range
    (the same arithmetic as :func:`fencli.preprocess.fen_input`)."""
    lo, hi = vrange
    x = np.asarray(block, dtype=np.float64) - lo
    x *= 1.0 / (hi - lo)
    x = (x * 2.0 - 1.0) * FEN_SCALE
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def fen_block(block: np.ndarray, fen: FenFn, vrange: tuple[float, float]) -> np.ndarray:
    """FEN output ``h x w x B`` float32 of one raw block (tile plus halo)."""
    y = fen(fen_tile_input(block, vrange))
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
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            raise FencliError("the cube holds NaN or Inf values: clean it first (--nan fill)")
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        s = RXStats.of(block)
        stats = s if stats is None else stats.merge(s)
    if not hi > lo:
        raise FencliError(f"the cube is constant (every value is {lo:g}): nothing to detect")
    return stats, lo, hi


def stream_grx(cube: Cube, bands: int | None = None, *, stats: RXStats | None = None,
               vrange: tuple[float, float] | None = None, progress: Progress | None = None) -> np.ndarray:
    """GRX of a cube of any size: statistics in one pass (skipped when given), scores in a second."""
    if stats is None or vrange is None:
        stats, *vrange = stream_stats(cube, bands)
    lo, hi = vrange
    scorer = GRXScorer.fit(stats.affine(lo, hi))
    h, w, _ = cube.shape
    scores = np.empty((h, w))
    for r0, block in iter_rows(cube, bands):
        x = np.asarray(block, np.float64) - lo
        x *= 1.0 / (hi - lo)
        scores[r0:r0 + block.shape[0]] = scorer.score(x)
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

def _ridge_inverse_dist(p: np.ndarray, d: np.ndarray, ridge: float) -> np.ndarray:
    """``sqrt(d^T inv(S + ridge I) d)`` for rows ``d``, ``S`` the unbiased covariance of rows ``p``.

    With fewer pixels than bands ``S`` is rank-deficient: Woodbury on the small pixel Gram matrix
    is exact and stable; otherwise a Cholesky solve of the full matrix.
    """
    n, b = p.shape
    pc = (p - p.mean(axis=0)) / math.sqrt(max(n - 1, 1))
    if n < b:
        gram = ridge * np.eye(n) + pc @ pc.T
        v = d @ pc.T
        q = np.einsum("ij,ij->i", d, d) - np.einsum("ij,ij->i", v, np.linalg.solve(gram, v.T).T)
        q /= ridge
    else:
        a = pc.T @ pc + ridge * np.eye(b)
        ch = np.linalg.cholesky(a)
        z = np.linalg.solve(ch, d.T)
        q = np.einsum("ij,ij->j", z, z)
    return np.sqrt(np.maximum(q, 0.0))


def slrx_block_size(bands: int, block_size: int | None, block_num: int = 25) -> int:
    """The reference's default: ``bands // block_num`` (it divides the BAND count)."""
    bs = block_size if block_size is not None else bands // block_num
    if bs < 1:
        raise FencliError(f"SLRX block size must be >= 1 (bands {bands} // block-num {block_num} is {bs})")
    return bs


def slrx_raw_maps(x01: np.ndarray, origin: tuple[int, int], core: tuple[int, int, int, int],
                  scene: tuple[int, int], bs: int, full_mean: np.ndarray, full_chol: np.ndarray,
                  ridge: float = SLRX_RIDGE) -> np.ndarray:
    """Unnormalized (block, surround, full) distance maps ``3 x h x w`` of the block-aligned ``core``.

    ``x01`` is the tile extent (core plus one block of halo where the scene has it) in [0, 1];
    ``origin`` its top-left in scene coordinates; ``full_chol`` the Cholesky factor of the full
    image's ``S + ridge I``.
    """
    r0c, r1c, c0c, c1c = core
    H, W = scene
    e0, f0 = origin
    maps = np.zeros((3, r1c - r0c, c1c - c0c))
    single = H <= bs and W <= bs
    for r0 in range(r0c, r1c, bs):
        r1 = min(r0 + bs, H)
        for c0 in range(c0c, c1c, bs):
            c1 = min(c0 + bs, W)
            p = x01[r0 - e0:r1 - e0, c0 - f0:c1 - f0].reshape(-1, x01.shape[2])
            out = (slice(None), slice(r0 - r0c, r1 - r0c), slice(c0 - c0c, c1 - c0c))
            shape = (r1 - r0, c1 - c0)
            m = np.empty((3, *shape))
            m[0] = _ridge_inverse_dist(p, p - p.mean(axis=0), ridge).reshape(shape)
            if single:
                m[1] = 0.0
            else:
                sur = [x01[i - e0:min(i + bs, H) - e0, j - f0:min(j + bs, W) - f0].reshape(-1, x01.shape[2])
                       for i in range(max(0, r0 - bs), min(H, r1 + bs), bs)
                       for j in range(max(0, c0 - bs), min(W, c1 + bs), bs) if (i, j) != (r0, c0)]
                q = np.concatenate(sur)
                m[1] = _ridge_inverse_dist(q, p - q.mean(axis=0), ridge).reshape(shape)
            z = np.linalg.solve(full_chol, (p - full_mean).T)
            m[2] = np.sqrt(np.einsum("ij,ij->j", z, z)).reshape(shape)
            maps[out] = m
    return maps


def full_factor(stats01: RXStats, ridge: float = SLRX_RIDGE) -> np.ndarray:
    """Cholesky factor of the full image's ``S + ridge I`` (SLRX's third distance)."""
    return np.linalg.cholesky(stats01.cov() + ridge * np.eye(len(stats01.mean)))


def combine_slrx(maps: np.ndarray) -> np.ndarray:
    """Each of the three maps min-max normalized over the whole scene, then their product; a
    constant map (no surround at all) is the neutral factor 1, as in :func:`fencli.detectors.slrx`."""
    out = np.ones(maps.shape[1:])
    for m in maps:
        lo, hi = m.min(), m.max()
        if hi > lo:
            out *= (m - lo) / (hi - lo)
    return out


def tiled_slrx(cube: Cube, bands: int | None = None, *, block_size: int | None = None,
               block_num: int = 25, tile: int = 256, stats: RXStats | None = None,
               vrange: tuple[float, float] | None = None, progress: Progress | None = None) -> np.ndarray:
    """SLRX of a cube of any size: full-image statistics streamed, raw maps on block-aligned tiles
    with a one-block halo, global normalization of the three maps at the end."""
    h, w, b = cube.shape
    b = bands or b
    bs = slrx_block_size(b, block_size, block_num)
    if stats is None or vrange is None:
        stats, *vrange = stream_stats(cube, b)
    lo, hi = vrange
    s01 = stats.affine(lo, hi)
    chol = full_factor(s01)
    maps = np.empty((3, h, w))
    for t in grid(h, w, max(tile, bs), bs, align=bs):
        x = np.asarray(cube.window(*t.ext, b), np.float64) - lo
        x *= 1.0 / (hi - lo)
        r0, r1, c0, c1 = t.core
        maps[:, r0:r1, c0:c1] = slrx_raw_maps(x, (t.ext[0], t.ext[2]), t.core, (h, w), bs, s01.mean, chol)
        if progress:
            progress((r1 - r0) * (c1 - c0))
    return combine_slrx(maps)


# --- the FEN of an ONNX Runtime session, per tile ----------------------------------------------

def session_tile_fen(session: Any) -> FenFn:
    """The per-tile FEN of a :class:`fencli.runtime.FENSession`: its raw forward pass on a
    preprocessed tile. A ``supp`` model divides by the norm of whatever it is given (each tile its
    own), so for tiles it runs the same graph with that last division cut off (see :func:`_pre_norm`)."""
    if getattr(session.info, "variant", "plain") != "supp":
        return session.run
    import onnxruntime as ort

    cut = ort.InferenceSession(_pre_norm(session.path, session.info.output_name),
                               _session_options(session.threads), providers=session.session.get_providers())
    name = session.info.input_name
    return lambda x: cut.run(None, {name: x})[0]


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


def _session_options(threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or 0
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


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
                  tile: int | None = None, workdir: str | Path | None = None, supp: bool = False,
                  options: dict[str, Any] | None = None, enhanced_out: str | Path | None = None,
                  progress: Progress | None = None) -> StreamResult:
    """Detect anomalies in a scene of any size with bounded memory (the out-of-core :func:`pipeline.run`).

    ``source``: a path or an ``H x W x bands`` array-like (memmap, h5py dataset, ndarray).
    ``fen``: the per-tile FEN (see :func:`fencli.runtime` sessions' tile entry), or None for raw
    detection. The FEN output goes to ``enhanced_out`` when given (``supp``: normalized there),
    otherwise to a temporary file in ``workdir`` removed afterwards. ``progress(n)`` is called as
    pixels finish each pass: ``H * W`` in all, twice that with a FEN.
    """
    options = dict(options or {})
    cube = open_cube(source)
    h, w, nb = cube.shape
    b = bands or nb
    if b > nb:
        raise FencliError(f"the scene has {nb} bands, fewer than the {b} asked for")
    if min(h, w) < 5:
        raise FencliError(f"the scene is {h} x {w} pixels: at least 5 x 5 are needed")
    seconds: dict[str, float] = {"enhance": 0.0}
    tmp = None
    try:
        det_cube, stats, vrange = cube, None, None
        if fen is not None:
            t0 = time.perf_counter()
            in_range = stream_range(cube, b)
            seconds["range"] = time.perf_counter() - t0
            if enhanced_out is not None:
                path = Path(enhanced_out)
            else:
                tmp = tempfile.TemporaryDirectory(prefix="fencli-", dir=workdir)
                path = Path(tmp.name) / "enhanced.npy"
            det_cube = create_raw(path, (h, w, b), np.float32)
            t0 = time.perf_counter()
            acc = tiled_fen(cube, fen, det_cube, bands=b, vrange=in_range, tile=tile,
                            supp_norm=supp and enhanced_out is not None, progress=progress)
            seconds["enhance"] = time.perf_counter() - t0
            if supp and enhanced_out is not None:  # the file holds y / ||y||: rescale the statistics
                k = 1.0 / math.sqrt(acc.sumsq)
                acc.lo, acc.hi = acc.lo * k, acc.hi * k
                acc.stats.mean, acc.stats.m2 = acc.stats.mean * k, acc.stats.m2 * k * k
            if not acc.hi > acc.lo:
                raise FencliError("the FEN output is constant: nothing to detect")
            stats, vrange = acc.stats, (acc.lo, acc.hi)
        t0 = time.perf_counter()
        if method == "grx":
            scores = stream_grx(det_cube, b if fen is None else None, stats=stats, vrange=vrange, progress=progress)
        elif method == "slrx":
            scores = tiled_slrx(det_cube, b if fen is None else None, stats=stats, vrange=vrange,
                                tile=tile or 256, progress=progress, **options)
        elif method == "lrx":
            from fencli.detectors import lrx  # noqa: PLC0415

            scores = tiled_local(det_cube, lrx, lrx_halo(**options), bands=b if fen is None else None,
                                 tile=max(tile or 256, lrx_outer(**options)), vrange=vrange, progress=progress,
                                 **options)
        else:
            raise FencliError(f"unknown method {method!r}: choose one of grx, slrx, lrx")
        seconds["detect"] = time.perf_counter() - t0
        return StreamResult(scores, method, b, (h, w, nb), seconds)
    finally:
        if det_cube is not cube:
            det_cube.close()
        cube.close()
        if tmp is not None:
            tmp.cleanup()
