"""Per-pixel-loop re-implementations of the published FERD GRX and SLRX, for speed ratios only.

:func:`published_slrx` is the authors' SLRX loop as they run it: PyTorch, float32 throughout, the
cube held as the network's ``1 x B x H x W`` tensor and viewed as ``H x W x B``, ``torch.cov`` and
``torch.linalg.inv`` with a 1e-6 ridge per block, surround and image, then one ``torch.mv`` and
``torch.dot`` per pixel and map (the device transfer of each surround pixel included, a no-op on the
CPU). It reproduces the reference AUC of abu-airport-1 to six decimals. :func:`published_slrx_numpy`
is the same loop in NumPy, the stand-in the speed reports used before (1.2-1.7x faster than the
PyTorch loop in the same run). GRX is written in the same per-pixel style from the spec (float32
pinv); its published source was not at hand. Not used by fencli.
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
    """The authors' fixed-patch local RX in PyTorch: per block, per pixel, three sqrt-Mahalanobis maps."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(cube, -1, 0), dtype=np.float32))[None]
    x = _to01_torch(x).squeeze(0).permute(1, 2, 0)  # H x W x B view of the 1 x B x H x W tensor
    h, w, b = x.shape
    bs = b // block_num
    ridge = 1e-6 * torch.eye(b)

    def mean_inverse(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return pixels.mean(dim=0), torch.linalg.inv(torch.cov(pixels.T) + ridge)

    def distance(pixel: torch.Tensor, mean: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        d = pixel - mean
        return torch.sqrt(torch.dot(d, torch.mv(inverse, d)))

    maps = torch.zeros((3, h, w))
    mean_f, inv_f = mean_inverse(x.reshape(-1, b))
    for r0 in range(0, h, bs):
        for c0 in range(0, w, bs):
            r1, c1 = min(r0 + bs, h), min(c0 + bs, w)
            mean_b, inv_b = mean_inverse(x[r0:r1, c0:c1].reshape(-1, b))
            sur = [x[i:i + bs, j:j + bs].reshape(-1, b)
                   for i in range(max(0, r0 - bs), min(h, r1 + bs), bs)
                   for j in range(max(0, c0 - bs), min(w, c1 + bs), bs) if (i, j) != (r0, c0)]
            if sur:
                mean_s, inv_s = mean_inverse(torch.cat(sur))
                for i in range(r0, r1):
                    for j in range(c0, c1):
                        maps[1, i, j] = distance(x[i, j].to(x.device), mean_s, inv_s)
            for i in range(r0, r1):
                for j in range(c0, c1):
                    maps[0, i, j] = distance(x[i, j], mean_b, inv_b)
                    maps[2, i, j] = distance(x[i, j], mean_f, inv_f)
    return (_to01_torch(maps[0]) * _to01_torch(maps[1]) * _to01_torch(maps[2])).numpy()


def _to01_torch(x: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    return (x - x.min()) / (x.max() - x.min())


def published_slrx_numpy(cube: np.ndarray, block_num: int = 25) -> np.ndarray:
    """:func:`published_slrx`'s loop in NumPy (the speed reports' earlier stand-in)."""
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
