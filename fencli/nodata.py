"""Nodata pixels: the rule that finds them in any window of a cube, and the fill the FEN sees.

A pixel is nodata when any of its bands equals one of the nodata values (compared in the cube's
dtype) or, when NaN is among them, any band is NaN or +-Inf. Nodata pixels are not measurements:
every statistic leaves them out (GRX's mean and covariance, SLRX's block, surround and full-image
statistics, LRX's windows, the FEN's value range and the adaptive FEN's ConvH), they are scored
NaN, written as the output's nodata and left out of the metrics.

:class:`NodataRule` is small and picklable: the engine hands it to every tile task (local or Dask),
which computes its own window's mask, so no ``H x W`` mask travels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def values_in(dtype: Any, nodata: list[float]) -> tuple[list[Any], bool]:
    """The nodata values a cube of ``dtype`` can hold, cast to it, and whether non-finite counts."""
    dtype = np.dtype(dtype)
    nonfinite = any(np.isnan(v) or np.isinf(v) for v in nodata) and dtype.kind == "f"
    kept = []
    for v in nodata:
        if np.isnan(v):
            continue
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            if v == int(v) and info.min <= v <= info.max:
                kept.append(dtype.type(int(v)))
        elif dtype.kind == "f":
            with np.errstate(over="ignore"):
                cast = dtype.type(v)
            if np.isfinite(cast) or np.isinf(v):
                kept.append(cast)
        elif dtype.kind == "b" and v in (0, 1):
            kept.append(bool(v))
    return kept, nonfinite


def nodata_rows(chunk: np.ndarray, kept: list[Any], nonfinite: bool) -> np.ndarray:
    """H' x W' bool of one block: some band equals a nodata value (or is NaN/Inf when ``nonfinite``)."""
    mask = np.zeros(chunk.shape[:2], dtype=bool)
    for v in kept:
        mask |= (chunk == v).any(axis=2)
    if nonfinite:
        mask |= ~np.isfinite(chunk).all(axis=2)
    return mask


@dataclass(frozen=True)
class NodataRule:
    """Which pixels of a cube of one dtype are nodata: ``kept`` values (cast to the dtype) and
    ``nonfinite`` (NaN/Inf pixels are nodata). :meth:`mask` of a window: ``h x w`` bool, or None
    when the window holds no nodata pixel (the detectors' unmasked path, bit for bit)."""

    kept: tuple
    nonfinite: bool

    @classmethod
    def of(cls, values: Any, dtype: Any) -> NodataRule | None:
        """The rule for ``values`` (floats, NaN = NaN/Inf) in a cube of ``dtype``; None when no
        value can occur in that dtype."""
        kept, nonfinite = values_in(dtype, [float(v) for v in (values or [])])
        return cls(tuple(kept), nonfinite) if kept or nonfinite else None

    @classmethod
    def nonfinite_only(cls) -> NodataRule:
        """NaN/Inf pixels: how an enhanced cube marks the nodata pixels of its input."""
        return cls((), True)

    def mask(self, block: np.ndarray) -> np.ndarray | None:
        mask = nodata_rows(block, list(self.kept), self.nonfinite)
        return mask if mask.any() else None


def valid_mean(block: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-band float64 mean of the pixels of ``block`` (``h x w x B``) where ``mask`` is False;
    zeros when there are none."""
    n = int(mask.size - np.count_nonzero(mask))
    if n == 0:
        return np.zeros(block.shape[-1])
    return np.add.reduce(block, axis=(0, 1), dtype=np.float64, where=~mask[:, :, None]) / n


def filled(block: np.ndarray, mask: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """A float64 copy of ``block`` with its nodata pixels (``mask``) replaced by ``fill`` (``B``): what
    the FEN sees (``fill`` is the scene's valid mean spectrum)."""
    out = np.array(block, dtype=np.float64)  # always a copy
    out[mask] = fill
    return out
