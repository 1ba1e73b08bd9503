"""fencli: hyperspectral anomaly detection with the FERD Feature Enhancement Network (FEN).

Python API (the ``fencli`` command is a thin layer over it)::

    import fencli
    scene = fencli.read_scene("abu-airport-1.mat")        # .cube (H x W x bands), .gt
    res = fencli.detect(scene, "slrx")                     # FE+SLRX with the adaptive FEN
    res.auc, res.scores, res.model, res.seconds
    raw = fencli.detect(scene.cube, "grx", model=None)     # raw GRX
    enhanced = fencli.enhance(scene.cube)                  # the FEN-enhanced cube
    grx = fencli.GRX().fit(background).score(other_scene)  # detectors as estimators

Data flows one way: :mod:`fencli.io` reads, :mod:`fencli.preprocess` scales, :mod:`fencli.runtime`
enhances on ONNX Runtime, :mod:`fencli.detectors` scores, :mod:`fencli.metrics` evaluates,
:mod:`fencli.engine` runs that flow whole or in tiles. Names are imported on first use, so
``import fencli`` (and every command's start-up) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "read_scene": "fencli.io", "Scene": "fencli.io",
    "detect": "fencli.api", "enhance": "fencli.api",
    "Result": "fencli.engine",
    "FencliError": "fencli.errors",
    "Detector": "fencli.detectors", "Option": "fencli.detectors", "RXStats": "fencli.detectors",
    "GRX": "fencli.detectors", "SLRX": "fencli.detectors", "LRX": "fencli.detectors",
}

__all__ = ["FencliError", "Detector", "GRX", "LRX", "Option", "RXStats", "Result", "SLRX", "Scene", "__version__",
           "detect", "enhance", "read_scene"]

if TYPE_CHECKING:
    from fencli.api import detect, enhance
    from fencli.detectors import GRX, LRX, SLRX, Detector, Option, RXStats
    from fencli.engine import Result
    from fencli.errors import FencliError
    from fencli.io import Scene, read_scene


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fencli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
