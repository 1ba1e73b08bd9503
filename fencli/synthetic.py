"""Synthetic scenes with planted anomalies: the demo's embedded default and the tests' known answers.

The background is a smooth mixture of a few endmember spectra (what RX models well); the targets are
small patches whose spectrum is partly a foreign material, so a detector that works ranks them first.
"""

from __future__ import annotations

import numpy as np


def planted_scene(h: int = 40, w: int = 48, bands: int = 30, n_anomalies: int = 6,
                  seed: int = 0, target_size: int = 1,
                  fraction: float = 0.5, texture: float = 0.0,
                  noise: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """(cube ``h x w x bands`` float32, ground truth ``h x w`` uint8) with ``n_anomalies`` targets.

    Each target is a ``target_size`` square whose pixels are ``fraction`` foreign material;
    ``texture`` scales random per-pixel abundance variation (clutter that competes with targets).
    """
    rng = np.random.default_rng(seed)
    wl = np.linspace(0.0, 1.0, bands)
    # Smooth, positive endmember spectra: a few Gaussian absorption/reflection features each.
    endmembers = np.stack([
        0.5 + 0.25 * np.sin(2 * np.pi * (k + 1) * wl / 3 + rng.uniform(0, np.pi))
        + sum(rng.uniform(-0.15, 0.15) * np.exp(-((wl - rng.uniform()) / 0.05) ** 2) for _ in range(3))
        for k in range(4)
    ])
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    abundances = np.stack([np.sin(3 * yy) ** 2, np.cos(2 * xx) ** 2, yy * xx, 1 - yy], -1)
    abundances *= np.exp(texture * rng.standard_normal(abundances.shape))  # pixel-scale clutter
    abundances /= abundances.sum(-1, keepdims=True) + 1e-9
    cube = abundances @ endmembers + noise * rng.standard_normal((h, w, bands))
    gt = np.zeros((h, w), np.uint8)
    target = 0.5 + 0.4 * np.cos(2 * np.pi * 5 * wl + rng.uniform(0, np.pi))
    margin = 2 + target_size
    for _ in range(n_anomalies):
        r, c = rng.integers(margin, h - margin), rng.integers(margin, w - margin)
        patch = (slice(r, r + target_size), slice(c, c + target_size))
        cube[patch] = (1 - fraction) * cube[patch] + fraction * target
        gt[patch] = 1
    return cube.astype(np.float32), gt


def demo_scene(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """The embedded default: 100 x 100 pixels x 200 bands, 12 faint 2 x 2 targets (7 % foreign material)."""
    cube, gt = planted_scene(100, 100, 200, n_anomalies=12, seed=seed, target_size=2,
                             fraction=0.07, texture=0.5, noise=0.02)
    # A sensor-like integer cube, as the public .mat scenes are stored.
    return np.round(np.clip(cube, 0.0, None) * 4000).astype(np.uint16), gt
