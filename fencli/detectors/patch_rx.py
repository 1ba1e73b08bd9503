"""The FERD authors' fixed-patch local RX (SLRX), float64, vectorized over blocks."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from fencli import lapack
from fencli.detectors.base import Detector, Option
from fencli.detectors.stats import RXStats, inverse_cholesky, sq_norms_after
from fencli.errors import FencliError
from fencli import threads
from fencli.threads import one_blas_thread

SLRX_RIDGE = 1e-6  # the reference's ridge on every SLRX covariance, in [0, 1] units


class SLRX(Detector):
    """Three maps of sqrt-Mahalanobis distances, each min-maxed to [0, 1] over the scene, multiplied:
    each pixel to its own block, to the union of its (up to 8) neighbouring blocks, and to the full
    image, each with ``inv(S + ridge I)``.

    ``block_size`` defaults to ``B // block_num`` (BANDS, as in the reference). Blocks tile from
    (0, 0), edge blocks are smaller; a block larger than the image is clipped to it (one block, no
    surround). Sets of fewer than 2 pixels get a zero covariance. Tiles are aligned on the block
    grid with one block of halo, so every block sees its whole surround. The distances are computed
    in the cube's own units with the ridge scaled to them (``ridge (hi - lo)^2``): the same
    distances as in [0, 1] units, without a pass that scales the pixels.
    """

    name = "slrx"
    summary = "fixed-patch local RX (FERD): block, surround and full-image distances multiplied"
    options = (Option("block_size", int, None, "SLRX block side in pixels (default: bands // block-num).", 1),
               Option("block_num", int, 25, "SLRX: the reference's divisor of the BAND count.", 1),
               Option("ridge", float, SLRX_RIDGE, "Ridge added to local covariances, in [0, 1] units (LRX default 0, "
                                                   "SLRX default 1e-06)."))
    maps, needs_stats, needs_range, keep_pixels, handles_nodata = 3, True, True, True, True

    def configure(self, bands: int) -> None:
        if not self.params["ridge"] > 0:
            raise FencliError(f"SLRX ridge must be positive, got {self.params['ridge']}")
        self.bs = slrx_block_size(bands, self.params["block_size"], self.params["block_num"])
        self.halo = self.align = self.min_tile = self.bs

    def fit_background(self, stats: RXStats | None, vrange: tuple[float, float] | None) -> None:
        import scipy.linalg  # noqa: F401  (before the BLAS limit, so that its pool is limited too)

        self.ridge = self.params["ridge"] / stats.scale**2  # in the cube's units
        with one_blas_thread():
            self.white = slrx_full_whitener(stats.raw_covariance, self.ridge)

    def score_tile(self, block: np.ndarray, tile: Any = None, mask: np.ndarray | None = None) -> np.ndarray:
        h, w, b = block.shape
        with np.errstate(over="ignore", invalid="ignore"):  # nodata values: zeroed next
            region = self.stats.centered(block).reshape(h, w, b)
        if mask is not None:
            region[mask] = 0.0  # the full image's mean: adds nothing to any sum or moment
        with one_blas_thread():
            return slrx_raw_maps(region, self.bs, self.white, self.ridge, None if tile is None else tile.local_core,
                                 valid=None if mask is None else ~mask)

    def finish(self, maps: np.ndarray) -> np.ndarray:
        return slrx_combine(maps)


def slrx(cube: np.ndarray, block_size: int | None = None, block_num: int = 25, ridge: float = SLRX_RIDGE,
         vrange: tuple[float, float] | None = None) -> np.ndarray:
    """SLRX scores of a cube in memory: ``SLRX(...).fit(cube, vrange).score(cube)``."""
    return SLRX(block_size=block_size, block_num=block_num, ridge=ridge).fit_score(cube, vrange)


def slrx_block_size(bands: int, block_size: int | None = None, block_num: int = 25) -> int:
    """SLRX's block side: ``block_size``, else the reference's ``bands // block_num`` (it divides
    the BAND count)."""
    if block_size is None and block_num < 1:
        raise FencliError(f"SLRX block_num must be at least 1, got {block_num}")
    bs = block_size if block_size is not None else bands // block_num
    if bs < 1:
        raise FencliError(f"SLRX block size must be at least 1 (got {bs}: {bands} bands // block_num "
                          f"{block_num}); pass block_size")
    return bs


def slrx_full_whitener(covariance: np.ndarray, ridge: float = SLRX_RIDGE) -> np.ndarray:
    """``L^-1`` with ``L L^T = S + ridge I`` for the full-image map: ``||L^-1 (x - mu)||^2``."""
    if not ridge > 0:
        raise FencliError(f"SLRX ridge must be positive, got {ridge}")
    return inverse_cholesky(covariance + ridge * np.eye(covariance.shape[0]))


def slrx_combine(maps: np.ndarray) -> np.ndarray:
    """SLRX's scores from its three maps over the whole scene: each min-maxed, then multiplied."""
    return _minmax_map(maps[0]) * _minmax_map(maps[1]) * _minmax_map(maps[2])


def _minmax_map(scores: np.ndarray) -> np.ndarray:
    """The reference's To01 on one map; a constant map (the reference's 0/0) becomes all ones,
    the neutral factor of SLRX's product, so it carries no information instead of NaN. NaN
    (nodata pixels) stays NaN and is left out of the min and max."""
    lo, hi = scores.min(), scores.max()
    if np.isnan(lo):  # nodata pixels: only then the NaN-aware (slower) reductions
        lo, hi = np.nanmin(scores), np.nanmax(scores)
        if not hi > lo:
            return np.where(np.isnan(scores), np.nan, 1.0)
    if not hi > lo:
        return np.ones_like(scores)
    return (scores - lo) / (hi - lo)


def _surround_distances(sums: np.ndarray, moments: np.ndarray, counts: np.ndarray,
                        pixels: np.ndarray, ridge: float) -> np.ndarray:
    """``(x - mu_k)^T (S_k + ridge I)^-1 (x - mu_k)`` for the pixels ``x`` of block k (``m x n x B``)
    against the set with the given sums, raw second moments (``m x`` RFP, :mod:`fencli.lapack`;
    overwritten) and counts.

    Per block one Cholesky of ``(n_k - 1)(S_k + ridge I)`` and one triangular solve of its pixels
    (LAPACK ``pftrf`` + ``tfsm``, the FLOP floor: ``B^3/3 + B^2 n``), squared norms times
    ``n_k - 1``: no inverse, no cancellation. Sets of fewer than 2 pixels get a zero covariance (the
    reference divides 0 by 0) and the distance becomes ``|x - mu|^2 / ridge``.
    """
    m, n, b = pixels.shape
    means = sums / counts[:, None]
    dof = np.maximum(counts - 1, 1)
    centered = np.empty((m, b, n))  # centered[k].T: block k's pixels as the rows of a column-major n x B
    np.subtract(pixels.transpose(0, 2, 1), means[:, :, None], out=centered)
    moments[counts < 2] = 0.0
    moments[:, lapack.rfp_diagonal(b)] += (dof * ridge)[:, None]
    # Inside the loop only the long LAPACK calls, which release the GIL: SLRX's other thread runs.
    for k in range(m):
        if counts[k] > 1:  # scatter = X^T X - n mu mu^T
            lapack.sfrk_lower(-counts[k], means[k][:, None], 1.0, moments[k])
        info = lapack.pftrf_lower(moments[k])
        if info != 0:
            raise FencliError(f"SLRX surround covariance is not positive definite (LAPACK info {info})")
        lapack.tfsm_rows(moments[k], centered[k].T)  # each pixel's L^-1 (x - mu)
    return np.einsum("kbn,kbn->kn", centered, centered) * dof[:, None]


def _own_block_distances(centered: np.ndarray, ridge: float, counts: np.ndarray | None = None) -> np.ndarray:
    """Squared Mahalanobis distance of each block pixel to its own block, ``inv(S_b + ridge I)``.

    ``centered`` is ``m x n x B`` (each block minus its own mean). The block covariance has rank
    ``< n``; by Woodbury on the ``n x n`` Gram matrix ``K = Xc Xc^T`` the distance is exactly
    ``(n - 1) [K (K + c I)^-1]_ii = (n - 1) (1 - c [(K + c I)^-1]_ii)`` with ``c = (n - 1) ridge``:
    no ``B x B`` inverse. ``[(K + c I)^-1]_ii`` is the squared norm of column i of ``L^-1``
    (``L L^T = K + c I``, LAPACK potrf + trtri). Its share ``c [.]_ii`` is about ``1 / n`` for a
    block of fewer pixels than bands, so the difference loses no digits. Fewer than 2 pixels: the
    covariance is taken as 0 and the distance is 0.

    ``counts`` (``m``): each block's valid pixels, where nodata pixels are zero rows of ``centered``
    (each block centred on its valid pixels' mean). A zero row is a zero row and column of ``K``, so
    ``K + c I`` is block diagonal and the valid pixels' ``[(K + c I)^-1]_ii`` are exactly those of
    their own Gram matrix: the formula holds with ``n`` the valid count, block by block.
    """
    if counts is not None:
        return _own_block_distances_masked(centered, ridge, counts)
    m, n, _ = centered.shape
    if n < 2:
        return np.zeros((m, n))
    c = (n - 1) * ridge
    low = np.matmul(centered, centered.transpose(0, 2, 1))  # the Gram matrices in one call (GEMM)
    diag = np.arange(n)
    low[:, diag, diag] += c
    for k in range(m):  # low[k].T is column-major: its lower triangle becomes L^-1
        if lapack.potrf_lower(low[k].T) or lapack.trtri_lower(low[k].T):
            raise FencliError("SLRX block covariance is not positive definite")
    low = np.triu(low)  # (the Gram's other triangle)
    return np.clip((n - 1) * (1.0 - c * np.einsum("kij,kij->ki", low, low)), 0.0, None)


def _own_block_distances_masked(centered: np.ndarray, ridge: float, counts: np.ndarray) -> np.ndarray:
    """:func:`_own_block_distances` with ``counts`` valid pixels per block (nodata rows zero): ``c``
    and ``n - 1`` per block. Fewer than 2 valid pixels: distance 0, as for a block of 1 pixel."""
    m, n, _ = centered.shape
    dof = np.maximum(counts - 1.0, 0.0)
    c = np.where(counts < 2, ridge, dof * ridge)  # any positive c where the result is set to 0
    low = np.matmul(centered, centered.transpose(0, 2, 1))
    diag = np.arange(n)
    low[:, diag, diag] += c[:, None]
    for k in range(m):
        if lapack.potrf_lower(low[k].T) or lapack.trtri_lower(low[k].T):
            raise FencliError("SLRX block covariance is not positive definite")
    low = np.triu(low)
    # fewer than 2 valid pixels: dof = 0, so the distance is 0
    return np.clip(dof[:, None] * (1.0 - c[:, None] * np.einsum("kij,kij->ki", low, low)), 0.0, None)


def _block_groups(strip: np.ndarray, bs: int) -> list[tuple[int, int, np.ndarray]]:
    """Blocks of one block row, grouped by shape: (first block column, block width, m x n x B)."""
    rh, w, b = strip.shape
    full = w // bs
    groups = []
    if full:
        tiles = strip[:, : full * bs].reshape(rh, full, bs, b).transpose(1, 0, 2, 3)
        groups.append((0, bs, tiles.reshape(full, rh * bs, b)))
    if w % bs:
        groups.append((full, w % bs, strip[:, full * bs:].reshape(1, -1, b)))
    return groups


def _paste(out: np.ndarray, values: np.ndarray, col0: int, bw: int, bs: int) -> None:
    """Write ``m x n`` per-block values back into the block row ``out`` (``rh x W``)."""
    m = values.shape[0]
    rh = out.shape[0]
    out[:, col0 * bs: col0 * bs + m * bw] = values.reshape(m, rh, bw).transpose(1, 0, 2).reshape(rh, -1)


def _row_moments(groups: list[tuple[int, int, np.ndarray]], moments: np.ndarray,
                 valid: list | None = None) -> tuple[np.ndarray, ...]:
    """Per block of one block row: (sums, raw second moments X^T X, pixel counts). The moments go
    to ``moments`` (``m x`` RFP, :mod:`fencli.lapack`): one triangle, half the bytes to sum.
    ``valid``: the row's validity groups (:func:`_block_groups` of the valid mask), whose sums are the
    counts; nodata pixels are zero, so they add nothing to the sums and moments."""
    sums = np.concatenate([px.sum(axis=1) for _, _, px in groups])
    blocks = [block for _, _, px in groups for block in px]
    for block, out in zip(blocks, moments):
        lapack.sfrk_lower(1.0, block.T, 0.0, out)  # half a GEMM
    if valid is not None:
        counts = np.concatenate([v.sum(axis=(1, 2), dtype=np.float64) for _, _, v in valid])
    else:
        counts = np.concatenate([np.full(px.shape[0], px.shape[1], dtype=np.float64) for _, _, px in groups])
    return sums, moments, counts


def _neighbourhood(rows: list[tuple[np.ndarray, ...]], own: tuple[np.ndarray, ...],
                   vert: list[np.ndarray], out: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """3 x 3 block neighbourhood sums minus the block itself (the spec's surround union), into the
    buffers ``out`` through ``vert`` (shaped as ``own``)."""
    for k, (v, horiz) in enumerate(zip(vert, out)):
        np.add(rows[0][k], rows[1][k], out=v) if len(rows) > 1 else np.copyto(v, rows[0][k])
        if len(rows) > 2:
            v += rows[2][k]
        np.subtract(v, own[k], out=horiz)
        horiz[1:] += v[:-1]
        horiz[:-1] += v[1:]
    return tuple(out)


def slrx_raw_maps(region: np.ndarray, bs: int, full_whitener: np.ndarray, ridge: float = SLRX_RIDGE,
                  core: tuple[int, int, int, int] | None = None, valid: np.ndarray | None = None) -> np.ndarray:
    """Unnormalized SLRX maps ``3 x h x w`` (distance to the block, to its surround, to the full
    image) of the ``core`` rows/columns of ``region`` (default: all of it).

    ``region``: float64 pixels minus the full image's mean, its origin on the block grid, in the
    units ``ridge`` and ``full_whitener`` are expressed in; ``core`` bounds on multiples of ``bs`` (or the scene's edge) with one block of halo around
    it wherever the scene has one, so every core block sees its whole surround. ``full_whitener``:
    :func:`slrx_full_whitener` of the full image's covariance. Returns sqrt distances; the caller
    min-maxes each map over the whole scene (:func:`slrx_combine`). Vectorized over a block row.

    One thread per core, its calls releasing the GIL. The block rows are split into one run per two
    threads, which take rows from its two ends until they meet: a thread slowed by the machine's
    other work takes fewer rows, and only the rows where the two meet have their moments formed twice.

    ``valid`` (``h x w`` bool, None: all): nodata pixels are False there and zero in ``region``. Block
    and surround statistics then count valid pixels only (per block: means over them, covariances with
    their ``n - 1``); a block or surround with fewer than 2 valid pixels gets the rule for sets of
    fewer than 2 pixels, one with none a distance of 0. The maps at nodata pixels are meaningless
    (the caller sets them NaN).
    """
    rh, rw, b = region.shape
    r0, r1, c0, c1 = core if core is not None else (0, rh, 0, rw)
    maps = np.empty((3, r1 - r0, rw))
    maps[1] = 0.0  # blocks without a surround (a single-block image) keep 0
    tops = list(range(r0, r1, bs))
    workers = min(threads.cores(), len(tops))
    runs = [_RowRun(part) for part in np.array_split(tops, -(-workers // 2))] if tops else []

    def worker(w: int) -> None:
        rows = _MomentRows(region, bs, valid)
        for top in runs[w // 2].take(from_top=w % 2 == 0):
            bottom = min(top + bs, r1)
            full = sq_norms_after(full_whitener, np.reshape(region[top:bottom, c0:c1], (-1, b)), triangular=True)
            np.sqrt(full.reshape(bottom - top, c1 - c0), out=maps[2, top - r0: bottom - r0, c0:c1])
            _block_row_maps(rows, top, ridge, maps[:2, top - r0: top - r0 + bs])

    threads.parallel(worker, range(workers))
    return maps[:, :, c0:c1]


class _RowRun:
    """Block rows that two threads share, one taking them from the top, the other from the bottom."""

    def __init__(self, tops: Iterable[int]) -> None:
        self.tops, self.lock = [int(t) for t in tops], threading.Lock()

    def take(self, from_top: bool) -> Iterator[int]:
        while True:
            with self.lock:
                if not self.tops:
                    return
                top = self.tops.pop(0 if from_top else -1)
            yield top


class _MomentRows:
    """One thread's block rows with their raw moments (:func:`_row_moments`), formed once each and
    kept while a neighbouring row needs them; buffers are reused: fresh arrays of a row's 13 moment
    matrices cost page faults and, freed, TLB flushes that stall the other thread."""

    def __init__(self, region: np.ndarray, bs: int, valid: np.ndarray | None = None) -> None:
        _, rw, b = region.shape
        self.region, self.bs, self.per_row = region, bs, -(-rw // bs)
        self.valid = None if valid is None else valid[:, :, None]
        self.cache: dict[int, tuple[list, tuple[np.ndarray, ...]]] = {}
        self.free: list[np.ndarray] = []
        self.vert, self.out = ([np.empty((self.per_row, b)), np.empty((self.per_row, lapack.rfp_size(b))),
                                np.empty(self.per_row)] for _ in range(2))

    def row(self, top: int) -> tuple[list, tuple[np.ndarray, ...]]:
        if top not in self.cache:
            groups = _block_groups(self.region[top: top + self.bs], self.bs)
            valid = None if self.valid is None else _block_groups(self.valid[top: top + self.bs], self.bs)
            b = self.region.shape[2]
            buffer = self.free.pop() if self.free else np.empty((self.per_row, lapack.rfp_size(b)))
            self.cache[top] = (groups, _row_moments(groups, buffer, valid), valid)
        return self.cache[top]

    def around(self, top: int) -> tuple[list, tuple[np.ndarray, ...], list | None]:
        """Row ``top``'s blocks, its surround sums (:func:`_neighbourhood`) and its validity groups."""
        for q in [q for q in self.cache if abs(q - top) > self.bs]:
            self.free.append(self.cache.pop(q)[1][1])
        groups, own, valid = self.row(top)
        rows = [self.row(q)[1] for q in (top - self.bs, top, top + self.bs) if 0 <= q < self.region.shape[0]]
        return groups, _neighbourhood(rows, own, self.vert, self.out), valid


def _block_row_maps(rows: _MomentRows, top: int, ridge: float, maps: np.ndarray) -> None:
    """The block and surround maps (``maps``: ``2 x bs x W``) of the block row at ``top``."""
    groups, (sur_sums, sur_moments, sur_counts), valid = rows.around(top)
    bs = rows.bs
    k0 = 0
    for g, (col0, bw, px) in enumerate(groups):
        m = px.shape[0]
        sel = slice(k0, k0 + m)
        k0 += m
        if valid is not None:
            _masked_block_maps(px, valid[g][2][:, :, 0], sur_sums[sel], sur_moments[sel], sur_counts[sel], ridge,
                               maps, col0, bw, bs)
            continue
        own_means = px.mean(axis=1, keepdims=True)
        _paste(maps[0], np.sqrt(_own_block_distances(px - own_means, ridge)), col0, bw, bs)
        if sur_counts[sel].all():  # no surround only where the scene is one block
            d2 = _surround_distances(sur_sums[sel], sur_moments[sel], sur_counts[sel], px, ridge)
            _paste(maps[1], np.sqrt(np.clip(d2, 0.0, None)), col0, bw, bs)


def _masked_block_maps(px: np.ndarray, valid: np.ndarray, sur_sums: np.ndarray, sur_moments: np.ndarray,
                       sur_counts: np.ndarray, ridge: float, maps: np.ndarray, col0: int, bw: int, bs: int) -> None:
    """:func:`_block_row_maps` for one group of blocks holding nodata (``valid``: ``m x n`` bool, the
    nodata pixels zero in ``px``): own-block statistics over the valid pixels; a surround without a
    valid pixel gives distance 0 (as a scene of one block has no surround)."""
    counts = valid.sum(axis=1).astype(np.float64)
    own_means = px.sum(axis=1, keepdims=True) / np.maximum(counts, 1.0)[:, None, None]
    centred = px - own_means
    centred[~valid] = 0.0
    _paste(maps[0], np.sqrt(_own_block_distances(centred, ridge, counts)), col0, bw, bs)
    have = sur_counts > 0
    d2 = np.zeros(valid.shape)
    if have.any():
        d2[have] = _surround_distances(sur_sums[have], sur_moments[have], sur_counts[have], px[have], ridge)
    _paste(maps[1], np.sqrt(np.clip(d2, 0.0, None)), col0, bw, bs)


