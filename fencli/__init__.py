"""fencli: hyperspectral anomaly detection with the FERD Feature Enhancement Network (FEN).

Data flows one way: :mod:`fencli.io` reads a scene, :mod:`fencli.preprocess` scales it,
:mod:`fencli.runtime` enhances it with the FEN on ONNX Runtime, :mod:`fencli.detectors` scores it,
:mod:`fencli.metrics` evaluates it and :mod:`fencli.report` shows it. The CLI in
:mod:`fencli.cli` is a thin layer over those functions.
"""

__version__ = "0.1.0"
