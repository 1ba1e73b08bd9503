"""Dual-window local RX (LRX), with Spectral Python's border rule."""

from __future__ import annotations

from typing import Any

import numpy as np

from fencli.detectors.base import Detector, Option
from fencli.errors import FencliError
from fencli.preprocess import value_range
from fencli import threads
from fencli.threads import on_halves, one_blas_thread

_BIG = 1e200  # bordering diagonal: Cholesky of [[S, y], [y^T, BIG]] stays positive definite


class LRX(Detector):
    """Each pixel against the mean and covariance of its outer window minus its inner (guard)
    window, squared Mahalanobis with ``inv(S + ridge I)``.

    Border rule (Spectral Python's ``rx(window=...)``): both windows keep their size and are shifted
    to stay inside the image, so every pixel has ``outer^2 - inner^2`` background pixels; windows
    larger than the image are cut to it. (5, 21) gives 416 background pixels, enough for 200 bands
    without a ridge. Tiles carry the outer window's radius as halo and are at least ``outer`` px, so
    a tile edge never shifts a window.
    """

    name = "lrx"
    summary = "dual-window local RX: each pixel against its ring of neighbours"
    options = (Option("windows", tuple[int, int], (5, 21), "LRX inner (guard) and outer window sides."),
               Option("ridge", float, 0.0, "Ridge added to local covariances, in [0, 1] units (LRX default 0, "
                                            "SLRX default 1e-06)."))
    needs_range = handles_nodata = True

    def configure(self, bands: int) -> None:
        inner, outer = self.params["windows"]
        if inner < 1 or outer <= inner or inner % 2 == 0 or outer % 2 == 0:
            raise FencliError(f"LRX windows must be odd with 1 <= inner < outer, got ({inner}, {outer})")
        self.halo, self.min_tile = outer // 2, outer

    def score_tile(self, block: np.ndarray, tile: Any = None, mask: np.ndarray | None = None) -> np.ndarray:
        inner, outer = self.params["windows"]
        scores = lrx_map(block, inner, outer, self.params["ridge"], self.vrange, mask=mask)
        return (scores if tile is None else scores[tile.crop])[None]


def lrx(cube: np.ndarray, inner: int = 5, outer: int = 21, ridge: float = 0.0,
        vrange: tuple[float, float] | None = None) -> np.ndarray:
    """LRX scores of a cube in memory: ``LRX(windows=(inner, outer), ridge=ridge).fit(cube, vrange).score(cube)``."""
    return LRX(windows=(inner, outer), ridge=ridge).fit_score(cube, vrange)


def unit_centered(cube: np.ndarray, vrange: tuple[float, float] | None = None,
                  mean: np.ndarray | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """``(cube - mean) / (hi - lo)``, C-ordered float64 ``H x W x B``: ``minmax01(cube)`` centred (the
    local statistics are shift-invariant; centring limits cancellation). ``mean`` in the cube's own
    units, default the cube's mean. One pass, its halves on two threads where there are two cores.
    ``mask`` (``H x W`` bool): nodata pixels, left out of the range and the default mean, and zero."""
    if mask is not None:
        from fencli.nodata import valid_mean

        lo, hi = vrange if vrange is not None else value_range(cube[~mask])
        shift = valid_mean(cube, mask) if mean is None else np.asarray(mean, dtype=np.float64)
    else:
        lo, hi = vrange if vrange is not None else value_range(cube)
        shift = cube.mean(axis=(0, 1), dtype=np.float64) if mean is None else np.asarray(mean, dtype=np.float64)
    out = np.empty(cube.shape)

    def rows(r0: int, r1: int) -> None:
        if mask is None:
            np.subtract(cube[r0:r1], shift, out=out[r0:r1], dtype=np.float64)
            out[r0:r1] *= 1.0 / (hi - lo)
            return
        with np.errstate(over="ignore", invalid="ignore"):  # nodata values: zeroed next
            np.subtract(cube[r0:r1], shift, out=out[r0:r1], dtype=np.float64)
            out[r0:r1] *= 1.0 / (hi - lo)
        out[r0:r1][mask[r0:r1]] = 0.0

    on_halves(rows, cube.shape[0])
    return out


def _window_starts(length: int, extent: int) -> np.ndarray:
    """Spectral Python's rule: a window of ``length`` centred on each index, shifted to stay inside."""
    return np.clip(np.arange(extent) - length // 2, 0, extent - length)


def lrx_map(cube: np.ndarray, inner: int, outer: int, ridge: float,
            vrange: tuple[float, float] | None, mask: np.ndarray | None = None) -> np.ndarray:
    """LRX's ``H x W`` scores of a block (the kernel :class:`LRX` runs per tile).

    Window sums of per-pixel outer products run along rows (one row added and one removed per
    output row) and along columns (cumulative sums); each pixel's distance then comes from one
    in-place Cholesky of its bordered background matrix (no inverse, no copy).

    ``mask`` (``h x w`` bool, True at nodata pixels): they are zero after centring (on the valid
    pixels' mean), so the window sums are sums over valid pixels; each pixel's background count is
    the box sums of the valid mask (outer minus inner). A background of fewer than 2 valid pixels
    scores 0 (nothing to compare with); a rank-deficient one goes through ``pinv`` as Spectral's does.
    """
    h, w, b = cube.shape
    ho, wo, hi, wi = min(outer, h), min(outer, w), min(inner, h), min(inner, w)
    n = ho * wo - hi * wi
    if n < 2 or (n - 1 < b and not ridge > 0):
        raise FencliError(f"LRX background holds {n} pixels for {b} bands: enlarge the outer window "
                          "or pass a positive ridge")
    x = unit_centered(cube, vrange, mask=mask)
    valid = None if mask is None else ~mask
    # Column slabs, one per core, each with the outer window's half as halo and a core at least one
    # window wide: no window inside a slab moves, so each slab's scores are the whole scene's.
    parts, halo = max(1, min(threads.cores(), w // wo)), wo // 2
    edges = [w * i // parts for i in range(parts + 1)]

    def slab(c0: int, c1: int) -> np.ndarray:
        left, right = max(0, c0 - halo), min(w, c1 + halo)
        part = None if valid is None else valid[:, left:right]
        return _lrx_scores(x[:, left:right], (ho, wo, hi, wi), n, ridge, part)[:, c0 - left: c1 - left]

    with one_blas_thread():
        return np.concatenate(threads.parallel(slab, edges[:-1], edges[1:]), axis=1)
def _window_counts(valid: np.ndarray, sides: tuple[int, int, int, int]) -> np.ndarray:
    """Valid background pixels of each pixel's windows (outer minus inner box sums, Spectral's
    shifted windows), float64 ``h x w``."""
    h, w = valid.shape
    ho, wo, hi, wi = sides
    cum = np.zeros((h + 1, w + 1), dtype=np.int64)
    cum[1:, 1:] = valid.cumsum(axis=0).cumsum(axis=1)

    def box(height: int, width: int) -> np.ndarray:
        r, c = _window_starts(height, h), _window_starts(width, w)
        return (cum[np.ix_(r + height, c + width)] - cum[np.ix_(r, c + width)]
                - cum[np.ix_(r + height, c)] + cum[np.ix_(r, c)])

    return (box(ho, wo) - box(hi, wi)).astype(np.float64)


def _lrx_scores(x: np.ndarray, sides: tuple[int, int, int, int], n: int, ridge: float,
                valid: np.ndarray | None = None) -> np.ndarray:
    """:func:`lrx`'s scores of a centred ``h x w x B`` cube (or column slab) with window sides
    ``(outer h, outer w, inner h, inner w)`` and ``n`` background pixels each (``valid``: nodata
    pixels False, zero in ``x``; then each pixel's own count of valid background pixels)."""
    h, w, b = x.shape
    ho, wo, hi, wi = sides
    counts = None if valid is None else _window_counts(valid, sides)
    windows = {"o": (_window_starts(ho, h), ho, wo), "i": (_window_starts(hi, h), hi, wi)}
    running = {}  # per window: [column sums, column second moments, first row] over its rows
    for key, (rows, height, _) in windows.items():
        top = x[rows[0]: rows[0] + height]
        running[key] = [top.sum(axis=0), np.einsum("rwi,rwj->wij", top, top), rows[0]]
    cum1, cum2 = np.zeros((w + 1, b)), np.zeros((w + 1, b, b))
    box1, box2 = np.empty((w, b)), np.empty((w, b, b))
    border = np.zeros((w, b + 1, b + 1))  # [[M_c + (n-1) ridge I, y], [y^T, BIG]], symmetric
    diag = np.arange(b)
    scores = np.empty((h, w))
    for r in range(h):
        for key, (rows, height, _) in windows.items():
            state = running[key]
            while state[2] < rows[r]:  # slide the window down one row
                old, new = x[state[2]], x[state[2] + height]
                state[0] += new - old
                state[1] += np.multiply(new[:, :, None], new[:, None, :], out=box2)
                state[1] -= np.multiply(old[:, :, None], old[:, None, :], out=box2)
                state[2] += 1
        sums = border[:, :b, :b]
        _column_box(running["o"], wo, cum1, cum2, out=(box1, sums))
        mean = box1.copy()
        _column_box(running["i"], wi, cum1, cum2, out=(box1, box2))
        mean -= box1
        sums -= box2
        if counts is None:
            mean /= n
            sums -= np.multiply(mean[:, :, None], mean[:, None, :] * n, out=box2)
            sums[:, diag, diag] += (n - 1) * ridge
        else:
            nr = counts[r]
            mean /= np.maximum(nr, 1.0)[:, None]
            sums -= np.multiply(mean[:, :, None], mean[:, None, :] * nr[:, None, None], out=box2)
            sums[:, diag, diag] += ((nr - 1) * ridge)[:, None]
        np.subtract(x[r], mean, out=border[:, b, :b])
        border[:, :b, b] = border[:, b, :b]
        border[:, b, b] = _BIG
        if counts is None:
            scores[r] = (n - 1) * _bordered_last_row(border, b)
        else:
            few = nr < 2  # no background to compare with: 0
            sums[few] = np.eye(b)  # (and no failed batch for them)
            scores[r] = np.where(few, 0.0, (nr - 1) * _bordered_last_row(border, b))
    return scores


def _column_box(state: list, length: int, cum1: np.ndarray, cum2: np.ndarray,
                out: tuple[np.ndarray, np.ndarray]) -> None:
    """Sums over a window of ``length`` columns centred on each column, shifted inside (Spectral's
    rule), of the running column sums in ``state``: cumulative sums, then differences of slices."""
    w = out[0].shape[0]
    # A running sum of B x B slices, one vector add per column: numpy's cumsum(axis=0) walks the
    # 320 kB column stride element by element and measured 5x slower on these arrays.
    for c in range(w):
        np.add(cum1[c], state[0][c], out=cum1[c + 1])
        np.add(cum2[c], state[1][c], out=cum2[c + 1])
    half, last = length // 2, w - length  # columns [0, half] share start 0, [half + last, w) start last
    for cum, res in zip((cum1, cum2), out):
        np.subtract(cum[length: length + last + 1], cum[: last + 1], out=res[half: half + last + 1])
        res[:half] = res[half]
        res[half + last + 1:] = res[half + last]


def _bordered_last_row(border: np.ndarray, b: int) -> np.ndarray:
    """Per matrix of the batch: ``||L^-1 y||^2`` from one batched Cholesky of the symmetric
    bordered matrix ``[[S, y], [y^T, BIG]]`` (the factor's last row holds ``L^-1 y``).

    A singular background (e.g. duplicate bands without ridge) makes the batch fail; that row's
    matrices then go one by one, the singular ones through ``pinv`` as Spectral does.
    """
    try:
        row = np.linalg.cholesky(border)[:, b, :b]
        return np.einsum("ki,ki->k", row, row)
    except np.linalg.LinAlgError:
        out = np.empty(border.shape[0])
        for k, mat in enumerate(border):
            cov, y = mat[:b, :b], mat[b, :b]
            try:
                row = np.linalg.cholesky(mat)[b, :b]
                out[k] = row @ row
            except np.linalg.LinAlgError:
                out[k] = y @ np.linalg.pinv(cov, hermitian=True) @ y
        return out


