"""The one engine: a scene walks a tile grid through scan -> enhance -> fit -> score -> finish.

Every command, the benchmarks and the tests call :func:`run` (detection) or :func:`enhance`. A scene
is processed in passes over tiles; each pass maps one function over its tiles, in this process or
through an executor (:class:`fencli.cluster.DaskExecutor`: the same plan, tasks on a cluster):

1. **scan** (row chunks): NaN/Inf check, the global value range, and where needed the float64
   :class:`~fencli.detectors.RXStats` (the adaptive FEN's ConvH, raw GRX/SLRX backgrounds);
2. **enhance** (tiles with the model's receptive radius of real pixels as halo,
   :func:`~fencli.tiles.fen_halo`: 1 for fencli's one-block models, 4 for FERD's): the FEN per tile,
   its core written to a file-backed cube; the output's range and statistics come back with it;
3. **detect**: the detector fitted once on those statistics, then tiles with the detector's own
   halo and alignment scored, then the maps combined (SLRX's global min-max).

Results equal the whole-scene computation to :data:`TILED_RTOL` (the tests hold them there): the
FEN is pointwise except layer1's 3x3 convs, the detectors' local windows fit inside their halos, the
statistics merge exactly (Chan's update), and a whole scene is the one-tile case of the same fit,
score and finish. A ``supp`` model's global Frobenius norm is a positive scale that every detector's
min-max cancels, so tiles run the graph without it and only a written enhanced cube is divided by
it, in a last pass.

A scene held in memory that fits one tile is the one-tile case: no scan, the FEN on the whole
cube, the detector fitted on it and scoring it as one tile (:meth:`~fencli.detectors.Detector.score`).

Memory when tiled: one tile and its FEN activations (:func:`fencli.tiles.default_tile` sizes them
from the available memory), float64 chunks of about 64 MB, and the ``H x W`` float64 maps (three
for SLRX). The enhanced cube goes to a temporary ``.npy`` in ``workdir`` (removed afterwards) or,
for ``fencli enhance --tile``, to the output file itself.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial, reduce
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fencli.detectors import Detector, RXStats, make_detector
from fencli.errors import FencliError
from fencli.metrics import roc3d
from fencli.nodata import NodataRule, filled
from fencli.threads import one_blas_thread
from fencli.preprocess import (band_count, check_size, checked_range, fen_input, fen_output, model_bands,
                               require_finite, select_bands)
from fencli.tiles import (Cube, RawCube, Tile, create_raw, default_tile, fen_halo, grid, open_cube, row_chunk,
                          row_tiles)

Progress = Callable[[int], None]  # called with the number of pixels a pass just finished
# Max relative difference, tiled against whole scene (tests/test_tiled_equals_whole.py, test_engine.py,
# test_nodata.py): raw detectors share one numerical path (measured <= 6e-14); the FEN's output may
# differ by the float32 kernels ONNX Runtime picks per tile shape (measured 0 to 2.7e-7), which the
# detectors on it carry, LRX's small local covariances amplifying them (FE detections: measured 2e-12
# to 5.2e-6); the published supp model's output is ~1e-4 in size, its float32 rounding shows (2.4e-5).
TILED_RTOL = {"raw": 1e-10, "fen": 1e-6, "fe": 2e-5, "supp": 1e-4}
DETECT_TILE = 256  # default tile side of the detectors' pass (local windows, SLRX blocks)


class Enhancer(Protocol):
    """What the engine needs of a FEN (:class:`fencli.runtime.FENSession`, the adaptive FEN)."""

    name: str
    bands: int | None  # None: any band count
    needs_scene_stats: bool  # ``tile_fen`` wants the scene's RXStats, not only its value range

    def check_bands(self, available: int) -> None: ...

    def enhance(self, cube: np.ndarray) -> np.ndarray: ...

    def tile_fen(self, stats: RXStats | None, vrange: tuple[float, float]) -> Callable[[np.ndarray], np.ndarray]: ...


@dataclass
class Result:
    """Scores of one scene by one method, with the evaluation when ground truth is known.

    ``scores``: ``H x W`` float64; ``method``: the detector's name; ``model``: the FEN's name (None:
    raw); ``bands``: bands kept; ``auc``: ROC AUC against the ground truth (None without one);
    ``metrics``: Chang's 3D-ROC areas (:func:`fencli.metrics.roc3d`); ``seconds``: per stage;
    ``shape``: the input's ``(H, W, bands)``; ``nodata_pixels``: the scene's nodata pixels (scored
    NaN, left out of the metrics); ``gt_nodata_pixels``: the ground truth's nodata pixels (left out).
    """

    scores: np.ndarray
    method: str
    model: str | None
    bands: int
    auc: float | None
    metrics: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)
    shape: tuple[int, ...] = ()
    nodata_pixels: int = 0
    gt_nodata_pixels: int = 0


def _open(source: Any, bands: int | None, enhancer: Any) -> tuple[Cube, int]:
    """The scene as a :class:`~fencli.tiles.Cube`, refused when too small, and the bands it keeps."""
    cube = open_cube(source)
    check_size(cube.shape)
    return cube, kept_bands(cube.shape[2], bands, enhancer)


def kept_bands(available: int, bands: int | None, enhancer: Any) -> int:
    """How many leading bands the run keeps: the model's (``--bands`` must agree), else ``bands``
    or all; a scene with too few for the model is the model's one-line error."""
    keep = model_bands(bands, enhancer)
    if enhancer is not None:
        enhancer.check_bands(min(available, keep or available))
    return band_count(available, keep)


def known_range(band_range: tuple[Any, Any] | None, bands: int) -> tuple[float, float] | None:
    """The value range of the first ``bands`` bands from per-band (min, max), when known."""
    if band_range is None:
        return None
    return float(np.min(band_range[0][:bands])), float(np.max(band_range[1][:bands]))


def plan_tile(shape: tuple[int, ...], bands: int, tile: int | None, executor: Any = None) -> int:
    """The FEN pass's tile side, or 0 for the whole scene in memory: ``tile`` when given, else
    tiles only when the scene is larger than a tile the available memory allows (an executor: always)."""
    if tile is not None and tile < 0:
        raise FencliError(f"--tile must be >= 0, got {tile}")
    if tile == 0 and executor is not None:
        raise FencliError("--engine dask works on tiles: --tile 0 does not apply")
    if tile is not None:
        return tile
    side = default_tile(bands)
    return 0 if max(shape[0], shape[1]) <= side and executor is None else side


# --- the passes: module-level functions of picklable arguments, so any executor can run them ----

@dataclass
class Partial:
    """What a pass learns on the way, mergeable across tiles: range, statistics, sum of squares,
    and with nodata the valid pixels' per-band sums and count (their mean fills nodata pixels for
    the FEN)."""

    lo: float = math.inf
    hi: float = -math.inf
    sumsq: float = 0.0
    stats: RXStats | None = None
    total: np.ndarray | None = None
    count: int = 0

    def add(self, block: np.ndarray, stats: bool, sumsq: bool = False, mask: np.ndarray | None = None,
            sums: bool = False) -> Partial:
        """Learn from ``block``; ``mask`` (True at nodata) leaves pixels out; ``sums``: gather the
        valid per-band sums."""
        if mask is not None or sums:
            pixels = block.reshape(-1, block.shape[-1]) if mask is None else block[~mask]
            if sums:
                add = pixels.sum(axis=0, dtype=np.float64)
                self.total = add if self.total is None else self.total + add
                self.count += pixels.shape[0]
            if not pixels.shape[0]:
                return self
            block = pixels[None]
        require_finite(block)
        self.lo, self.hi = min(self.lo, float(block.min())), max(self.hi, float(block.max()))
        pixels = block.reshape(-1, block.shape[-1])
        if sumsq:
            p64 = pixels.astype(np.float64)
            self.sumsq += float(np.einsum("ij,ij->", p64, p64))
        if stats:
            if self.stats is None:
                self.stats = RXStats(block.shape[-1])
            with one_blas_thread():  # the same bits whatever the machine's load
                self.stats.update(pixels)
        return self

    def merge(self, other: Partial) -> Partial:
        self.lo, self.hi, self.sumsq = min(self.lo, other.lo), max(self.hi, other.hi), self.sumsq + other.sumsq
        if other.stats is not None:
            self.stats = other.stats if self.stats is None else self.stats.merge(other.stats)
        if other.total is not None:
            self.total = other.total if self.total is None else self.total + other.total
            self.count += other.count
        return self

    @property
    def fill(self) -> np.ndarray | None:
        """The valid pixels' mean spectrum (None unless sums were gathered)."""
        return None if self.total is None else self.total / max(self.count, 1)


def _mask(rule: NodataRule | None, block: np.ndarray) -> np.ndarray | None:
    return None if rule is None else rule.mask(block)


def _scan_task(tile: Tile, cube: Cube, bands: int, stats: bool, rule: NodataRule | None = None) -> Partial:
    block = cube.window(*tile.ext, bands)
    return Partial().add(block, stats, mask=_mask(rule, block), sums=rule is not None)


def _fen_task(tile: Tile, cube: Cube, bands: int, fen: Any, vrange: tuple[float, float], out: Any,
              stats: bool, sumsq: bool, rule: NodataRule | None = None, fill: np.ndarray | None = None) -> Partial:
    block = cube.window(*tile.ext, bands)
    mask = _mask(rule, block)
    if mask is not None:  # the FEN sees the scene's valid mean spectrum there
        block = filled(block, mask, fill)
    y = fen(fen_input(block, vrange))  # the scene's range, not the tile's
    core = fen_output(y, tile.crop)
    core_mask = None if mask is None or not mask[tile.crop].any() else mask[tile.crop]
    part = Partial().add(core, stats, sumsq, mask=core_mask)
    if core_mask is not None:
        core[core_mask] = np.nan  # the enhanced cube's nodata, which the detect pass reads as such
    out.write(tile.core[0], tile.core[2], core)
    return part


def _score_task(tile: Tile, cube: Cube, bands: int | None, detector: Detector,
                rule: NodataRule | None = None) -> np.ndarray:
    block = cube.window(*tile.ext, bands)
    return detector.score_block(block, tile, _mask(rule, block))


def _scale_task(tile: Tile, out: RawCube, factor: float) -> None:
    block = out.window(*tile.ext)
    out.write(tile.core[0], tile.core[2], (block * np.float32(factor)).astype(out.dtype))


def _walk(executor: Any, fn: Callable[[Tile], Any], tiles: list[Tile], progress: Progress | None) -> Iterator[Any]:
    """``fn`` over ``tiles``, in this process when ``executor`` is None; results in tile order."""
    for t, part in zip(tiles, map(fn, tiles) if executor is None else executor.map(fn, tiles)):
        if progress:
            r0, r1, c0, c1 = t.core
            progress((r1 - r0) * (c1 - c0))
        yield part


def scan(cube: Cube, bands: int, *, stats: bool, vrange: tuple[float, float] | None = None, executor: Any = None,
         progress: Progress | None = None, rule: NodataRule | None = None, sums: bool = False) -> Partial:
    """Pass 1: range (and statistics when ``stats``) of ``cube[:, :, :bands]``; NaN/Inf or a constant
    cube is an error. A ``vrange`` already known (a validation pass gathered it) spares the pass
    when no statistics are needed. ``rule``: nodata pixels left out of everything; ``sums``: gather
    the valid mean (:attr:`Partial.fill`, needs ``rule``)."""
    h, w, _ = cube.shape
    if vrange is not None and not stats and not (sums and rule is not None):
        if progress:
            progress(h * w)
        return Partial(*checked_range(*vrange))
    task = partial(_scan_task, cube=cube, bands=bands, stats=stats, rule=rule)
    parts = _walk(executor, task, row_tiles(h, w, row_chunk(w, bands)), progress)
    total = reduce(Partial.merge, parts, Partial())
    checked_range(total.lo, total.hi)
    return total


def enhance_pass(cube: Cube, enhancer: Enhancer, out: Any, *, bands: int, tile: int, stats: bool,
                 sumsq: bool = False, vrange: tuple[float, float] | None = None, executor: Any = None,
                 progress: Progress | None = None, rule: NodataRule | None = None) -> Partial:
    """Passes 1 and 2: scan the input, then the per-tile FEN over ``cube[:, :, :bands]`` into ``out``;
    returns the output's range, and when asked its sum of squares and statistics. With ``rule``, the
    input's nodata pixels are left out of the scan, the FEN sees them as the valid mean spectrum,
    and ``out`` holds NaN there (the statistics returned leave them out)."""
    scene = scan(cube, bands, stats=enhancer.needs_scene_stats, vrange=vrange, executor=executor, progress=progress,
                 rule=rule, sums=rule is not None)
    vrange = (scene.lo, scene.hi)
    task = partial(_fen_task, cube=cube, bands=bands, fen=enhancer.tile_fen(scene.stats, vrange), vrange=vrange,
                   out=out, stats=stats, sumsq=sumsq, rule=rule, fill=scene.fill)
    h, w, _ = cube.shape
    total = reduce(Partial.merge, _walk(executor, task, grid(h, w, tile, fen_halo(enhancer)), progress), Partial())
    checked_range(total.lo, total.hi, "the FEN output")
    return total


def detect_pass(cube: Cube, detector: Detector, *, bands: int | None, tile: int, executor: Any = None,
                progress: Progress | None = None, rule: NodataRule | None = None) -> np.ndarray:
    """Pass 3: score every tile of the fitted ``detector`` and combine the maps (``rule``: nodata
    pixels, left out of the local statistics and scored NaN)."""
    h, w, _ = cube.shape
    if detector.halo == 0 and detector.align == 1:  # no context needed: contiguous row chunks
        tiles = row_tiles(h, w, row_chunk(w, bands or cube.shape[2]))
    else:
        tiles = grid(h, w, max(tile, detector.min_tile), detector.halo, align=detector.align)
    maps = np.empty((detector.maps, h, w))
    task = partial(_score_task, cube=cube, bands=bands, detector=detector, rule=rule)
    for t, part in zip(tiles, _walk(executor, task, tiles, progress)):
        maps[:, t.core[0]:t.core[1], t.core[2]:t.core[3]] = part
    return detector.finish(maps)


# --- the drivers ---------------------------------------------------------------------------------

def _whole_array(cube: Cube, bands: int) -> np.ndarray:
    src = cube.source
    if isinstance(src, np.ndarray) and not isinstance(src, np.memmap):
        return select_bands(src, bands)  # a view: no copy of a scene already in memory
    return cube.window(0, cube.shape[0], 0, cube.shape[1], bands)


def _enhance_masked(data: np.ndarray, mask: np.ndarray, enhancer: Enhancer, rule: NodataRule) -> np.ndarray:
    """The whole scene's FEN output when ``mask`` marks nodata pixels: range (and the adaptive FEN's
    statistics) of the valid pixels, nodata pixels replaced by their mean spectrum, the per-tile FEN
    on the one tile (a ``supp`` model without its final norm, as tiles run it); NaN at nodata. The
    range, statistics and mean come from the tiled path's own scan (the same row chunks, merged in the
    same order), so the FEN sees the same bits whole or tiled."""
    scene = scan(open_cube(data), data.shape[2], stats=enhancer.needs_scene_stats, rule=rule, sums=True)
    vrange = (scene.lo, scene.hi)
    fen = enhancer.tile_fen(scene.stats, vrange)
    out = fen_output(fen(fen_input(filled(data, mask, scene.fill), vrange)))
    out[mask] = np.nan
    return out


def run(source: Any, method: str | Detector = "grx", *, enhancer: Enhancer | None = None, bands: int | None = None,
        gt: np.ndarray | None = None, options: dict[str, Any] | None = None, tile: int | None = None,
        executor: Any = None, workdir: str | Path | None = None, progress: Progress | None = None,
        band_range: tuple[Any, Any] | None = None, nodata: Any = None,
        gt_valid: np.ndarray | None = None) -> Result:
    """Detect anomalies in a scene, FEN-enhanced first when ``enhancer`` is given.

    ``source``: an ``H x W x bands`` array-like (ndarray, memmap, h5py dataset), a ``.npy`` path or
    a :class:`fencli.tiles.Cube`. ``method``: a registered detector's name or a
    :class:`~fencli.detectors.Detector`. :func:`fencli.detect` is the validated front door to this. ``bands`` keeps the first N bands; with a model it defaults to the
    model's band count and must equal it. ``options`` go to the detector (block size, windows, ...).
    ``tile``: None decides from the scene's size and the free memory, 0 is the whole scene in
    memory, N tiles of N px. ``progress(n)`` is called as pixels finish each pass. ``band_range``:
    per-band (min, max) a validation pass already gathered (:func:`fencli.io.validate_cube`), which
    spares a tiled run the pass that would only find the value range.

    ``nodata``: values that mark nodata pixels (NaN: NaN/Inf), as :func:`fencli.io.nodata_mask` reads
    them; each pass finds them in its own windows (:class:`~fencli.nodata.NodataRule`). They are left
    out of every statistic, the FEN sees the valid pixels' mean spectrum there, they score NaN and the
    metrics leave them out, as they leave out the ground truth's nodata (``gt_valid`` False).
    """
    detector = make_detector(method, options)  # an unknown method or option fails before any work
    cube, b = _open(source, bands, enhancer)
    h, w, nb = cube.shape
    detector.configure(b)
    side = plan_tile(cube.shape, b, tile, executor)
    vrange = known_range(band_range, b)
    rule = NodataRule.of(nodata, cube.dtype)
    seconds = {"enhance": 0.0}
    if side == 0:
        data = _whole_array(cube, b)
        mask = _mask(rule, data)
        if enhancer is not None:
            t0 = time.perf_counter()
            data = enhancer.enhance(data) if mask is None else _enhance_masked(data, mask, enhancer, rule)
            seconds["enhance"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # the one-tile case of fit, score_tile, finish; a raw cube's range is known from validation
        scores = detector.fit_score(data, vrange if enhancer is None else None, mask=mask)
    else:
        with ExitStack() as cleanup:  # the enhanced cube is closed, then its folder removed
            t0 = time.perf_counter()
            if enhancer is not None:
                tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="fencli-", dir=workdir)))
                det_cube = cleanup.enter_context(create_raw(tmp / "enhanced.npy", (h, w, b), np.float32))
                part = enhance_pass(cube, enhancer, det_cube, bands=b, tile=side, stats=detector.needs_stats,
                                    vrange=vrange, executor=executor, progress=progress, rule=rule)
                seconds["enhance"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                det_bands, det_rule = None, None if rule is None else NodataRule.nonfinite_only()
            else:
                part = scan(cube, b, stats=detector.needs_stats, vrange=vrange, executor=executor, progress=progress,
                            rule=rule)
                det_cube, det_bands, det_rule = cube, b, rule
            detector.fit(part.stats, (part.lo, part.hi))
            scores = detect_pass(det_cube, detector, bands=det_bands, tile=tile or DETECT_TILE,
                                 executor=executor, progress=progress, rule=det_rule)
    seconds["detect"] = time.perf_counter() - t0
    nodata_pixels, valid = 0, gt_valid
    if rule is not None:
        missing = np.isnan(scores)  # exactly the nodata pixels: a valid pixel always has a score
        nodata_pixels = int(missing.sum())
        if nodata_pixels:
            valid = ~missing if valid is None else valid & ~missing
    auc, metrics = None, {}
    if gt is not None:
        metrics = roc3d(scores, gt, valid)
        auc = metrics["auc_df"]  # the ROC AUC; min-max scaling keeps the ranking
    name = enhancer.name if enhancer is not None else None
    gt_nodata = 0 if gt_valid is None else int(gt_valid.size - np.count_nonzero(gt_valid))
    return Result(scores, detector.name, name, b, auc, metrics, seconds, (h, w, nb), nodata_pixels, gt_nodata)


def enhance(source: Any, enhancer: Enhancer, *, bands: int | None = None, tile: int | None = None,
            out: RawCube | None = None, executor: Any = None, progress: Progress | None = None,
            band_range: tuple[Any, Any] | None = None, nodata: Any = None) -> np.ndarray | None:
    """The FEN-enhanced ``H x W x B`` float32 cube: in memory (returned) when the scene is one tile,
    else streamed tile by tile into ``out`` (a file-backed cube of that shape; returns None).
    ``band_range``: as for :func:`run`. ``nodata``: as for :func:`run`; the FEN sees the valid pixels'
    mean spectrum at nodata pixels, whose output is NaN (a ``supp`` model's norm is the valid pixels')."""
    cube, b = _open(source, bands, enhancer)
    h, w, _ = cube.shape
    rule = NodataRule.of(nodata, cube.dtype)
    side = plan_tile(cube.shape, b, tile, executor) if out is not None else 0
    supp = getattr(getattr(enhancer, "info", None), "variant", "plain") == "supp"  # only its norm needs the sum of squares
    if side == 0:
        data = _whole_array(cube, b)
        mask = _mask(rule, data)
        if mask is None:
            return enhancer.enhance(data)
        y = _enhance_masked(data, mask, enhancer, rule)
        if supp:
            valid = y[~mask].astype(np.float64)
            y *= np.float32(1.0 / math.sqrt(float(np.einsum("ij,ij->", valid, valid))))
        return y
    part = enhance_pass(cube, enhancer, out, bands=b, tile=side, stats=False, sumsq=supp,
                        vrange=known_range(band_range, b), executor=executor, progress=progress, rule=rule)
    if supp:  # the global Frobenius norm the tiles left out
        list(_walk(executor, partial(_scale_task, out=out, factor=1.0 / math.sqrt(part.sumsq)),
                   row_tiles(h, w, row_chunk(w, b, itemsize=4)), None))
    return None
