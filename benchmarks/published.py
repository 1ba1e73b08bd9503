"""Per-pixel-loop re-implementation of the published FERD GRX and SLRX, for speed ratios only.

SLRX follows the structure of the authors' published loop (float32 throughout, explicit inverses
with a 1e-6 ridge, one Python iteration and one matrix-vector product per pixel and map), in NumPy
instead of torch so that the benchmark needs no torch. GRX is written in the same per-pixel style
from the spec (float32 pinv); its published source was not at hand. Not used by fencli.
"""

from __future__ import annotations

import numpy as np


def _to01(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return (x - x.min()) / (x.max() - x.min())


def _cov(pixels: np.ndarray) -> np.ndarray:
    return np.cov(pixels, rowvar=False).astype(np.float32)


def published_grx(cube: np.ndarray) -> np.ndarray:
    """Global RX: float32 pinv of the covariance, one Mahalanobis product per pixel."""
    x = _to01(cube)
    h, w, b = x.shape
    flat = x.reshape(-1, b)
    mean = flat.mean(axis=0)
    inv = np.linalg.pinv(_cov(flat))
    out = np.zeros((h, w), np.float32)
    for i in range(h):
        for j in range(w):
            d = x[i, j] - mean
            out[i, j] = d @ (inv @ d)
    return out


def _inv_ridge(pixels: np.ndarray) -> np.ndarray:
    return np.linalg.inv(_cov(pixels) + np.float32(1e-6) * np.eye(pixels.shape[1], dtype=np.float32))


def published_slrx(cube: np.ndarray, block_num: int = 25) -> np.ndarray:
    """The authors' fixed-patch local RX: per block, per pixel, three sqrt-Mahalanobis maps."""
    with np.errstate(invalid="ignore", divide="ignore"):  # float32 can make a distance negative
        return _slrx(cube, block_num)


def _slrx(cube: np.ndarray, block_num: int) -> np.ndarray:
    x = _to01(cube)
    h, w, b = x.shape
    bs = b // block_num
    maps = np.zeros((3, h, w), np.float32)
    flat = x.reshape(-1, b)
    mean_f, inv_f = flat.mean(axis=0), _inv_ridge(flat)
    for r0 in range(0, h, bs):
        for c0 in range(0, w, bs):
            r1, c1 = min(r0 + bs, h), min(c0 + bs, w)
            blk = x[r0:r1, c0:c1].reshape(-1, b)
            mean_b, inv_b = blk.mean(axis=0), _inv_ridge(blk)
            sur = [x[i:i + bs, j:j + bs].reshape(-1, b)
                   for i in range(max(0, r0 - bs), min(h, r1 + bs), bs)
                   for j in range(max(0, c0 - bs), min(w, c1 + bs), bs) if (i, j) != (r0, c0)]
            if sur:
                s = np.concatenate(sur)
                mean_s, inv_s = s.mean(axis=0), _inv_ridge(s)
                for i in range(r0, r1):
                    for j in range(c0, c1):
                        d = x[i, j] - mean_s
                        maps[1, i, j] = np.sqrt(d @ (inv_s @ d))
            for i in range(r0, r1):
                for j in range(c0, c1):
                    d = x[i, j] - mean_b
                    maps[0, i, j] = np.sqrt(d @ (inv_b @ d))
                    d = x[i, j] - mean_f
                    maps[2, i, j] = np.sqrt(d @ (inv_f @ d))
    return _to01(maps[0]) * _to01(maps[1]) * _to01(maps[2])
