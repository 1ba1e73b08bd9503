"""Mahalanobis-distance anomaly detectors (RX family), vectorized NumPy.

Every detector takes an ``H x W x B`` cube (any numeric dtype) and returns ``H x W`` float64 scores.
"""

from __future__ import annotations

import numpy as np

from fencli.preprocess import minmax01


def grx(cube: np.ndarray) -> np.ndarray:
    """Global RX: ``(x - mu)^T pinv(S) (x - mu)`` with the unbiased covariance of all pixels."""
    h, w, b = cube.shape
    x = minmax01(cube).reshape(-1, b)
    x -= x.mean(axis=0)
    cov = (x.T @ x) / (x.shape[0] - 1)
    evals, evecs = np.linalg.eigh(cov)
    keep = evals > 1e-15 * evals.max()  # numpy.linalg.pinv's default cutoff
    white = x @ (evecs[:, keep] / np.sqrt(evals[keep]))
    return np.einsum("ij,ij->i", white, white).reshape(h, w)
