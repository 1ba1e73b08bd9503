"""Scaling steps shared by the FEN input and the detectors.

The FEN was trained on ``cube[:, :, :B]`` scaled by ONE global min/max to [-1, 1] and then
multiplied by 0.1; the detectors min-max the whole cube to [0, 1] first. Both use one global range,
so a scene streamed in tiles needs that range before the first tile (see :func:`value_range`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fencli.errors import FencliError

FEN_SCALE = 0.1  # the reference's ``x *= 0.1`` after mapping to [-1, 1]
MIN_SIDE = 5  # the FEN's reflect pad of 4 needs at least 5 pixels a side; the smallest scene accepted


def select_bands(cube: np.ndarray, bands: int | None) -> np.ndarray:
    """First ``bands`` bands of an ``H x W x bands`` cube (a view), or all when ``bands`` is None."""
    if bands is None:
        return cube
    return cube[:, :, :band_count(cube.shape[2], bands)]


def band_count(available: int, bands: int | None) -> int:
    """How many leading bands to keep: ``bands``, or all ``available`` when None; checked."""
    if bands is None:
        return available
    if bands < 1:
        raise FencliError(f"--bands must be at least 1, got {bands}")
    if available < bands:
        raise FencliError(f"the scene has {available} bands, fewer than the {bands} asked for")
    return bands


def value_range(cube: np.ndarray) -> tuple[float, float]:
    """Global (min, max) as Python floats; a constant cube cannot be scaled and is an error."""
    return checked_range(float(np.min(cube)), float(np.max(cube)))


def checked_range(lo: float, hi: float, what: str = "the cube") -> tuple[float, float]:
    """A global (min, max) however it was gathered (whole, streamed, per band), refused when constant."""
    if not hi > lo:
        raise FencliError(f"{what} is constant (every value is {lo:g}): nothing to detect")
    return lo, hi


def minmax01(cube: np.ndarray, vrange: tuple[float, float] | None = None) -> np.ndarray:
    """Affine map of the whole array to float64 [0, 1] with one global range (the detectors' first step)."""
    lo, hi = vrange if vrange is not None else value_range(cube)
    out = np.asarray(cube, dtype=np.float64) - np.float64(lo)
    out *= np.float64(1.0 / (hi - lo))
    return out


def fen_scale(cube: np.ndarray, vrange: tuple[float, float] | None = None) -> np.ndarray:
    """The FEN's value scaling, same layout: one global min-max to [-1, 1], times 0.1."""
    x = minmax01(cube, vrange)
    x *= 2.0
    x -= 1.0
    x *= FEN_SCALE
    return x


def fen_input(cube: np.ndarray, vrange: tuple[float, float] | None = None) -> np.ndarray:
    """``H x W x B`` cube -> ``1 x B x H x W`` float32 in [-0.1, 0.1], exactly the reference's steps."""
    x = fen_scale(cube, vrange)  # float64 scaling, like the reference's numpy arithmetic
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def model_bands(bands: int | None, enhancer: Any) -> int | None:
    """The bands to keep: the model's own count, which an explicit ``--bands`` must equal; a model
    that takes any band count (``bands`` None: the adaptive FEN) keeps ``bands`` (None: all)."""
    if enhancer is None or enhancer.bands is None:
        return bands
    if bands is not None and bands != enhancer.bands:
        raise FencliError(f"--bands {bands} differs from the {enhancer.bands} bands of model {enhancer.name}")
    return enhancer.bands
