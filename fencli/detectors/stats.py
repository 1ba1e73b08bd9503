"""The RX background statistics: mean and scatter accumulated in float64, and the whitening that
turns them into squared Mahalanobis distances.

Spectral Python's split: estimate the background once (:meth:`RXStats.from_cube` over a scene in
memory, :meth:`RXStats.update`/:meth:`RXStats.merge` over tiles, streams and Dask chunks), apply it
many times (:meth:`RXStats.score`). Every detector that needs the scene's statistics gets them
from here, whole scene or tiled.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fencli.errors import FencliError
from fencli.threads import on_halves, one_blas_thread

PINV_RCOND = 1e-15  # numpy.linalg.pinv's default cutoff, relative to the largest eigenvalue
_SAFE_RCOND = 1e-12  # an rcond above this keeps every eigenvalue above the cutoff, with a margin
_SCORE_CHUNK = 2048  # pixels whitened at once: a 3 MB buffer at 200 bands stays in cache (measured fastest)
_TRIANGLE_BLOCKS = 4  # row blocks of a triangular factor: 1.25x trmm's FLOPs instead of a GEMM's 2x


def as_pixels(data: np.ndarray, bands: int | None = None) -> np.ndarray:
    """``(..., B)`` array -> ``(n, B)`` view (no copy for contiguous input)."""
    arr = np.asarray(data)
    if arr.ndim < 1 or (bands is not None and arr.shape[-1] != bands):
        raise FencliError(f"expected pixels with {bands} bands, got an array of shape {arr.shape}")
    return arr.reshape(-1, arr.shape[-1])


def centered(data: np.ndarray, mean: np.ndarray, dtype: type = np.float64, out: np.ndarray | None = None) -> np.ndarray:
    """``data - mean`` as ``(n, B)`` C-ordered pixels, in one pass from ``(..., B)`` data in any memory
    order (a .mat cube is Fortran-ordered)."""
    if out is None:
        out = np.empty((data.size // data.shape[-1], data.shape[-1]), dtype=dtype)
    np.subtract(data, mean, out=out.reshape(data.shape), dtype=dtype)
    return out


def scatter(pixels: np.ndarray) -> np.ndarray:
    """Full symmetric ``Xc^T Xc``: NumPy runs BLAS syrk for ``a.T @ a`` (half a GEMM's FLOPs) and
    fills both triangles."""
    return pixels.T @ pixels


def sq_norms_after(factor: np.ndarray, pixels: np.ndarray, *, triangular: bool) -> np.ndarray:
    """``||T y||^2`` per row ``y`` of ``pixels`` (``n x B``), in float64.

    A lower-triangular ``T`` is applied in row blocks that skip its zero upper part, on ``y^T`` (a
    view): measured as fast as SciPy's in-place trmm, and the GRX path needs no SciPy, whose
    ``scipy.linalg`` import costs 0.2 s of every command.
    """
    n, b = pixels.shape
    rows = factor.shape[0]
    edges = [round(rows * j / _TRIANGLE_BLOCKS) for j in range(_TRIANGLE_BLOCKS + 1)] if triangular else [0, rows]
    buf = np.empty((rows, min(n, _SCORE_CHUNK)), dtype=np.result_type(factor, pixels))
    out = np.empty(n)
    for i in range(0, n, _SCORE_CHUNK):
        xt = pixels[i: i + _SCORE_CHUNK].T
        y = buf[:, : xt.shape[1]]
        for lo, hi in zip(edges[:-1], edges[1:]):  # row r of a lower-triangular T reads x[:r + 1]
            np.matmul(factor[lo:hi, : hi if triangular else b], xt[: hi if triangular else b], out=y[lo:hi])
        out[i: i + xt.shape[1]] = np.einsum("ij,ij->j", y, y, dtype=np.float64)
    return out


def inverse_cholesky(matrix: np.ndarray) -> np.ndarray:
    """``L^-1`` with ``L L^T = matrix`` (lower triangular); LinAlgError when not positive definite."""
    return _lower_inverse(np.linalg.cholesky(matrix))


def _lower_inverse(low: np.ndarray) -> np.ndarray:
    """Inverse of a lower-triangular matrix by halves, LAPACK trtri's blocking:
    ``[[A, 0], [B, C]]^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]``. A general inverse (LU) costs 5x the
    time at 200 x 200 (1.7 against 0.37 ms)."""
    n = low.shape[0]
    if n <= 64:
        return np.tril(np.linalg.inv(low))
    h = n // 2
    out = np.zeros_like(low)
    out[:h, :h], out[h:, h:] = _lower_inverse(low[:h, :h]), _lower_inverse(low[h:, h:])
    out[h:, :h] = -(out[h:, h:] @ low[h:, :h]) @ out[:h, :h]
    return out


class RXStats:
    """Background mean and scatter, accumulated in float64.

    Chunks merge with Chan's parallel update (exact, no catastrophic cancellation), so a scene
    streamed in tiles gets the whole cube's statistics up to rounding. ``vrange`` is the scene's
    value range: :attr:`scale` ``= 1 / (hi - lo)`` expresses the statistics in the reference's
    [0, 1] units (RX itself is invariant to that affine map; SLRX's ridge is not).
    """

    def __init__(self, bands: int, vrange: tuple[float, float] | None = None) -> None:
        self.bands = bands
        self.vrange = vrange
        self.n = 0
        self._mean = np.zeros(bands)
        self._scatter = np.zeros((bands, bands))
        self._factor: tuple[np.ndarray, bool] | None = None
        self._kept: tuple[np.ndarray, np.ndarray] | None = None  # (the cube, its centred pixels)

    @classmethod
    def from_cube(cls, cube: np.ndarray, vrange: tuple[float, float] | None = None, *,
                  keep: bool = False, mask: np.ndarray | None = None) -> RXStats:
        """The statistics of an ``H x W x B`` cube in memory: the scatter summed from two fixed halves
        of the rows (two threads where there are two cores; the same bits on any machine).

        ``keep``: hold on to the centred float64 pixels, so that :meth:`centered` of this same cube
        (scoring the scene that was fitted) costs no second pass over it.
        ``mask``: ``H x W`` bool, True at nodata pixels: left out of the mean and the scatter (their
        centred pixels, kept or not, are zero).
        """
        h, w, b = cube.shape
        stats = cls(b, vrange)
        if mask is None:
            n = h * w
            mean = cube.mean(axis=(0, 1), dtype=np.float64)
        else:
            from fencli.nodata import valid_mean

            n = int(mask.size - np.count_nonzero(mask))
            mean = valid_mean(cube, mask)
        pixels = np.empty((h * w, b))

        def part(r0: int, r1: int) -> np.ndarray:
            if mask is None:
                return scatter(centered(cube[r0:r1], mean, out=pixels[r0 * w: r1 * w]))
            with np.errstate(over="ignore", invalid="ignore"):  # nodata values: zeroed next
                rows = centered(cube[r0:r1], mean, out=pixels[r0 * w: r1 * w])
            rows[mask[r0:r1].reshape(-1)] = 0.0
            return scatter(rows)

        with one_blas_thread():
            stats._merge(n, mean, sum(on_halves(part, h)))
        if keep:
            stats._kept = (cube, pixels)
        return stats

    def fit(self, data: np.ndarray | Iterable[np.ndarray]) -> RXStats:
        """Accumulate one array of pixels ``(..., B)`` or an iterable of such chunks; returns self."""
        chunks = [data] if isinstance(data, np.ndarray) else data
        for chunk in chunks:
            self.update(chunk)
        return self

    def update(self, chunk: np.ndarray) -> None:
        """Merge one chunk of pixels ``(..., B)`` into the statistics."""
        pixels = as_pixels(chunk, self.bands)
        if pixels.shape[0]:
            mean = pixels.mean(axis=0, dtype=np.float64)
            self._merge(pixels.shape[0], mean, scatter(centered(pixels, mean)))

    def merge(self, other: RXStats) -> RXStats:
        """Fold another partial fit in (a tree reduction over Dask chunks); returns self."""
        if other.bands != self.bands:
            raise FencliError(f"cannot merge RX statistics of {other.bands} and {self.bands} bands")
        if other.n:
            self._merge(other.n, other._mean, other._scatter)
        return self

    def set_range(self, vrange: tuple[float, float] | None) -> RXStats:
        """Express mean, covariance and scores in [0, 1] units of ``vrange``, a range often known
        only after the pass that fitted the statistics; returns self."""
        self.vrange = None if vrange is None else (float(vrange[0]), float(vrange[1]))
        self._factor = None
        return self

    def _merge(self, n: int, mean: np.ndarray, scatter_: np.ndarray) -> None:
        total = self.n + n
        delta = mean - self._mean
        self._scatter += scatter_ + np.outer(delta, delta) * (self.n * n / total)
        self._mean += delta * (n / total)
        self.n = total
        self._factor = None

    @property
    def scale(self) -> float:
        """``1 / (hi - lo)`` of ``vrange`` (1 without one): raw units to [0, 1] units."""
        return 1.0 if self.vrange is None else 1.0 / (self.vrange[1] - self.vrange[0])

    @property
    def raw_mean(self) -> np.ndarray:
        """Background mean in the cube's own units."""
        return self._mean

    @property
    def mean(self) -> np.ndarray:
        """Background mean (in [0, 1] units when ``vrange`` is set)."""
        lo = 0.0 if self.vrange is None else self.vrange[0]
        return (self._mean - lo) * self.scale

    @property
    def raw_covariance(self) -> np.ndarray:
        """Unbiased covariance (divides by n - 1) in the cube's own units."""
        return self._covariance(1.0)

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased covariance (in [0, 1] units when ``vrange`` is set)."""
        return self._covariance(self.scale**2)

    def _covariance(self, factor: float) -> np.ndarray:
        if self.n < 2:
            raise FencliError("RX needs at least 2 pixels to estimate a covariance")
        return self._scatter * (factor / (self.n - 1))

    def centered(self, cube: np.ndarray) -> np.ndarray:
        """``cube - mean`` as float64 ``(n, B)`` pixels in the cube's units; the pixels kept by
        :meth:`from_cube` when ``cube`` is the cube fitted (handed over once)."""
        if self._kept is not None and self._kept[0] is cube:
            pixels, self._kept = self._kept[1], None
            return pixels
        return centered(cube, self._mean)

    def whitening(self) -> tuple[np.ndarray, bool]:
        """``(T, triangular)`` with ``T^T T = pinv(S)`` for the raw-unit covariance ``S``: ``L^-1``
        (``S = L L^T``) when ``pinv(S) = inv(S)`` provably, else ``Lambda^-1/2 V^T`` of the
        eigenvalues above the reference's pinv cutoff. Factored once, then shared."""
        if self._factor is None:
            cov = self.raw_covariance
            if not np.any(cov):
                raise FencliError("every pixel has the same spectrum: nothing to detect")
            with one_blas_thread():
                self._factor = _pinv_factor(cov)
        return self._factor

    def score(self, pixels: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each pixel ``(..., B)``; returns shape ``(...)``.
        Rows of one cube are whitened in two halves (two threads where there are two cores)."""
        # the cube itself to centered(): np.asarray makes a new view of a memmap, which would miss the
        # pixels kept for it
        flat = self.centered(pixels) if np.ndim(pixels) == 3 else centered(as_pixels(pixels, self.bands), self._mean)
        arr = np.asarray(pixels)
        factor, triangular = self.whitening()  # Mahalanobis distances do not depend on the units
        rows = arr.shape[0] if arr.ndim == 3 else 1
        per_row = flat.shape[0] // max(rows, 1)

        def part(r0: int, r1: int) -> np.ndarray:
            return sq_norms_after(factor, flat[r0 * per_row: r1 * per_row], triangular=triangular)

        with one_blas_thread():
            return np.concatenate(on_halves(part, rows)).reshape(arr.shape[:-1])


def _pinv_factor(cov: np.ndarray) -> tuple[np.ndarray, bool]:
    try:
        inv_l = inverse_cholesky(cov)
    except np.linalg.LinAlgError:
        inv_l = None
    if inv_l is not None and np.isfinite(inv_l).all():
        # exact 1-norm rcond >= lambda_min / lambda_max (symmetric S): above the cutoff, no
        # eigenvalue is cut and pinv(S) = inv(S)
        norm_inv = np.abs(inv_l.T @ inv_l).sum(axis=0).max()
        if 1.0 / (np.abs(cov).sum(axis=0).max() * norm_inv) > _SAFE_RCOND:
            return inv_l, True
    evals, evecs = np.linalg.eigh(cov)
    keep = evals > PINV_RCOND * evals.max()  # negative eigenvalues are rounding noise
    return (evecs[:, keep] / np.sqrt(evals[keep])).T, False
