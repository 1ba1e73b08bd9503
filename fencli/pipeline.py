"""One scene through the whole flow: preprocess -> enhance (optional FEN) -> detect -> evaluate.

The CLI, the benchmarks and the tests all call :func:`run`, so a figure printed by ``fencli bench``
is the same computation as ``fencli detect``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fencli.detectors import DETECTORS
from fencli.errors import FencliError
from fencli.metrics import roc3d
from fencli.preprocess import MIN_SIDE, model_bands, select_bands


class Enhancer(Protocol):
    """What the pipeline needs of a FEN session (see :class:`fencli.runtime.FENSession`)."""

    name: str
    bands: int

    def enhance(self, cube: np.ndarray) -> np.ndarray: ...


@dataclass
class Result:
    """Scores of one scene by one method, with the evaluation when ground truth is known."""

    scores: np.ndarray
    method: str
    model: str | None
    bands: int
    auc: float | None
    metrics: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)


def detector(method: str):
    """The detector function registered under ``method``, or a clear error listing the choices."""
    try:
        return DETECTORS[method]
    except KeyError:
        raise FencliError(f"unknown method {method!r}: choose one of {', '.join(DETECTORS)}") from None


def check_size(cube: np.ndarray) -> None:
    h, w = cube.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise FencliError(f"the scene is {h} x {w} pixels: at least {MIN_SIDE} x {MIN_SIDE} are needed")


def run(cube: np.ndarray, method: str = "grx", *, enhancer: Enhancer | None = None,
        bands: int | None = None, gt: np.ndarray | None = None,
        options: dict[str, Any] | None = None) -> Result:
    """Detect anomalies in an ``H x W x bands`` cube, FEN-enhanced first when ``enhancer`` is given.

    ``bands`` keeps the first N bands; with a model it defaults to the model's band count and must
    equal it. ``options`` go to the detector (block size, windows, ...).
    """
    detect = detector(method)
    check_size(cube)
    cube = select_bands(cube, model_bands(bands, enhancer))
    seconds = {"enhance": 0.0}
    if enhancer is not None:
        t0 = time.perf_counter()
        cube = enhancer.enhance(cube)
        seconds["enhance"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = detect(cube, **(options or {}))
    seconds["detect"] = time.perf_counter() - t0
    auc, metrics = None, {}
    if gt is not None:
        metrics = roc3d(scores, gt)
        auc = metrics["auc_df"]  # the ROC AUC; min-max scaling keeps the ranking
    return Result(scores, method, enhancer.name if enhancer else None, cube.shape[2], auc, metrics, seconds)
