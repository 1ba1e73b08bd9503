"""Issue 24's weak kind for the FEN: many small, dense targets (:func:`fencli.synthetic.dense_targets_scene`).

On a held-out beach scene (58 objects of median 3 pixels, 2% of the scene) the three-block adaptive
FEN lowered GRX and SLRX by 0.015 and 0.036. A spatial context mixes each target into its
neighbours' features: with many targets close together, many background pixels get a target in
their window. The one-block core's window is 3 x 3 (9 pixels) instead of 7 x 7 (49). This case
guards that the adaptive FEN does not fall below the raw detectors there (the issue's bar: no more
than 0.01 below raw), and pins its measured AUCs so a change that moves them shows.
"""

from __future__ import annotations

import numpy as np
import pytest

from fencli.detectors import grx, slrx
from fencli.enhancers import load_session
from fencli.metrics import roc_auc
from fencli.synthetic import dense_targets_scene

# measured with the shipped one-block core (the three-block core: FE+GRX 0.7677, FE+SLRX 0.7966)
MEASURED = {"grx": (0.6874, 0.7746), "slrx": (0.6639, 0.8029)}  # (raw, FE)


def test_the_scene_is_the_weak_kind():
    cube, gt = dense_targets_scene()
    assert cube.shape == (100, 100, 193) and cube.dtype == np.float32
    from scipy import ndimage

    labels, n = ndimage.label(gt)
    sizes = np.bincount(labels.ravel())[1:]
    assert n == 80 and set(sizes) == {1, 2, 3, 4}  # dozens of 1-4 pixel objects, none touching
    assert 0.015 < gt.mean() < 0.025  # about 2% of the scene


@pytest.mark.parametrize("method", ["grx", "slrx"])
def test_adaptive_fen_is_not_below_raw_on_many_small_dense_targets(method):
    cube, gt = dense_targets_scene()
    detect = {"grx": grx, "slrx": slrx}[method]
    raw = roc_auc(detect(cube), gt)
    fe = roc_auc(detect(load_session("adaptive", device="cpu").enhance(cube)), gt)
    assert fe >= raw - 0.01, (method, raw, fe)  # the guard: never more than 0.01 below raw
    assert (raw, fe) == pytest.approx(MEASURED[method], abs=2e-4), (raw, fe)
