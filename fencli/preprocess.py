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


def fen_output(y: Any, crop: tuple[slice, slice] | None = None) -> np.ndarray:
    """The FEN's ``1 x B x H x W`` output -> C-ordered float32 ``H x W x B`` (of the ``crop`` rows and
    columns when given): the inverse of :func:`fen_input`'s layout."""
    hwb = np.asarray(y)[0].transpose(1, 2, 0)
    return np.ascontiguousarray(hwb if crop is None else hwb[crop], dtype=np.float32)


def check_size(shape: tuple[int, ...], name: str = "the scene") -> None:
    """The one size check: at least ``MIN_SIDE x MIN_SIDE`` pixels and one band."""
    h, w, b = shape
    if h < MIN_SIDE or w < MIN_SIDE or b < 1:
        raise FencliError(f"{name} is {h} x {w} pixels x {b} bands: at least "
                          f"{MIN_SIDE} x {MIN_SIDE} pixels and 1 band are needed")


def nonfinite_error(name: str = "the scene", what: str = "NaN/Inf values") -> FencliError:
    """The one message for NaN/Inf values (``what``: how many, when counted). ``--nan fill`` is
    ``nan="fill"`` in :func:`fencli.detect`."""
    return FencliError(f"{name} has {what}; pass --nan fill to replace them by band means")


def require_finite(block: np.ndarray, name: str = "the scene") -> None:
    """Refuse a float block holding NaN or Inf (:func:`fencli.io.validate_cube` counts them first
    on every path of the CLI and the API; this guards the engine's own callers)."""
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        raise nonfinite_error(name)


def model_bands(bands: int | None, enhancer: Any) -> int | None:
    """The bands to keep: the model's own count, which an explicit ``--bands`` must equal; a model
    that takes any band count (``bands`` None: the adaptive FEN) keeps ``bands`` (None: all)."""
    if enhancer is None or enhancer.bands is None:
        return bands
    if bands is not None and bands != enhancer.bands:
        raise FencliError(f"--bands {bands} differs from the {enhancer.bands} bands of model {enhancer.name}")
    return enhancer.bands
