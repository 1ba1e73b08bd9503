"""Mahalanobis-distance anomaly detectors (the RX family), vectorized NumPy, float64 statistics.

- :mod:`~fencli.detectors.base`: the contract (:class:`Detector`: fit, score_tile, finish, score),
  :class:`Option` and the registry a subclass joins by defining ``name``;
- :mod:`~fencli.detectors.stats`: :class:`RXStats`, the background mean and scatter every detector
  fits from, whole scene or tiled;
- one module per detector: :mod:`~fencli.detectors.global_rx` (:class:`GRX`, the reference's
  ``pinv`` semantics), :mod:`~fencli.detectors.patch_rx` (:class:`SLRX`, the FERD authors'
  fixed-patch local RX), :mod:`~fencli.detectors.window_rx` (:class:`LRX`, dual-window local RX).

``grx``, ``slrx`` and ``lrx`` are one-line conveniences: the class fitted on a cube and scoring it.
"""

from fencli.detectors.base import REGISTRY, Detector, Option, make_detector
from fencli.detectors.global_rx import GRX, grx
from fencli.detectors.patch_rx import SLRX, slrx, slrx_block_size  # registered in this order: grx, slrx, lrx
from fencli.detectors.window_rx import LRX, lrx, unit_centered  # noqa: I001
from fencli.detectors.stats import RXStats

DETECTORS = REGISTRY  # name -> class: the built-in three, then any subclass defined later

__all__ = ["DETECTORS", "GRX", "LRX", "REGISTRY", "SLRX", "Detector", "Option", "RXStats", "grx", "lrx",
           "make_detector", "slrx", "slrx_block_size", "unit_centered"]
