"""The FEN's spectral projection (ConvH, ``B -> 64``) from spectral statistics, without torch.

What the FEN gains over raw RX comes mostly from ConvH (issue 11's ablation): a projection onto the
leading principal directions of background spectra stands level with the published, trained one.
This module is the one place that turns spectral statistics (a :class:`fencli.detectors.RXStats`,
mergeable over tiles) into such a projection. It serves two users: the initialisation of
``fencli train`` (statistics of the training backgrounds) and the adaptive FEN (statistics of the
scene itself).

Deterministic by construction: the eigenvectors of the float64 covariance are ordered by decreasing
eigenvalue and each is signed so that its entry of largest magnitude is positive (ties: the first
such entry), so the same statistics give the same matrix on every run.
"""

from __future__ import annotations

import numpy as np

from fencli.detectors import RXStats
from fencli.threads import one_blas_thread
from fencli.errors import FencliError

CONVH_WIDTH = 64  # FERD's ConvH output channels, the input width of the ResNet layer1


def leading_eigenvectors(matrix: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` leading unit eigenvectors of a symmetric matrix as rows ``(k, n)``, float64, signed
    so that each row's entry of largest magnitude is positive (the convention above)."""
    sym = np.asarray(matrix, dtype=np.float64)
    sym = (sym + sym.T) / 2  # exact symmetry: eigh reads one triangle only
    # LAPACK's divide and conquer (syevd) through NumPy: no SciPy import (0.2 s) in the adaptive FEN's
    # path. On one thread: OpenBLAS threads measured 25x slower on a loaded 2-core machine (575 vs 22 ms).
    with one_blas_thread():
        values, vectors = np.linalg.eigh(sym)
    order = np.argsort(values, kind="stable")[::-1][:k]
    rows = vectors[:, order].T.copy()
    pivot = np.argmax(np.abs(rows), axis=1)
    rows *= np.where(rows[np.arange(k), pivot] < 0, -1.0, 1.0)[:, None]
    return rows


def as_convh(rows: np.ndarray, norm: float, width: int = CONVH_WIDTH) -> np.ndarray:
    """ConvH weights ``(width, B)`` float32 from ``k <= width`` orthonormal rows, scaled to Frobenius
    ``norm``; with fewer rows than ``width`` the missing ones are zero (the layer still takes 64 channels)."""
    k, bands = rows.shape
    weight = np.zeros((width, bands))
    weight[:k] = rows * (norm / np.sqrt(k))  # orthonormal rows: Frobenius norm sqrt(k) before scaling
    return weight.astype(np.float32)


def principal_convh(stats: RXStats, norm: float, width: int = CONVH_WIDTH) -> np.ndarray:
    """ConvH weights ``(width, B)`` float32: the leading unit eigenvectors of the statistics'
    covariance, scaled to Frobenius ``norm``."""
    if stats.n < 2:
        raise FencliError("principal directions need at least 2 pixels")
    return as_convh(leading_eigenvectors(stats.covariance, min(width, stats.bands)), norm, width)
