"""fencli from Python: detect anomalies raw and FEN-enhanced, and use a detector as an estimator.

Run: ``python examples/quickstart.py [scene.mat]`` (default: the embedded synthetic demo scene).
"""

from __future__ import annotations

import sys

import numpy as np

import fencli
from fencli.synthetic import demo_scene

if len(sys.argv) > 1:
    scene = fencli.read_scene(sys.argv[1])  # .mat/.npy/.h5/ENVI/GeoTIFF: .cube (H x W x bands), .gt
    cube, gt = scene.cube, scene.gt
else:
    cube, gt = demo_scene()  # 100 x 100 x 200: fields, roads, roofs, 12 small targets

for method in ("grx", "slrx"):
    raw = fencli.detect(cube, method, model=None, gt=gt)
    fe = fencli.detect(cube, method, gt=gt)  # model="auto": the adaptive FEN, every band, no training
    print(f"{method.upper():5} raw AUC {raw.auc:.4f}   FE+{method.upper()} ({fe.model}) AUC {fe.auc:.4f}   "
          f"{fe.seconds['total']:.2f} s")

# Detectors are estimators: fit the background on one scene (here the left half), score another.
left, right = cube[:, :50], cube[:, 50:]
grx = fencli.GRX().fit(left)
scores = grx.score(right)
print(f"GRX fitted on the left half scores the right half: {scores.shape}, top score {scores.max():.1f}")

enhanced = fencli.enhance(cube)  # the FEN-enhanced cube, H x W x bands float32
print(f"enhanced cube {enhanced.shape} {enhanced.dtype}, values {enhanced.min():.3f} to {enhanced.max():.3f}")

try:
    bad = np.array(cube, dtype=np.float32)
    bad[0, 0, 0] = np.nan
    fencli.detect(bad, "grx")
except fencli.FencliError as err:  # the one-line message the CLI prints
    print(f"refused: {err}")
