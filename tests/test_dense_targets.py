"""Issue 24's weak kind for the FEN: many small, dense targets (:func:`fencli.synthetic.dense_targets_scene`).

On a held-out beach scene (58 objects of median 3 pixels, 2% of the scene) the three-block adaptive
FEN lowered GRX by 0.015 and SLRX by 0.036. The synthetic shore scene reproduces that: a spatial
context mixes each target into its neighbours' features and adds textured variance in the same
bands. The one-block core's window is 3 x 3 (9 pixels) instead of 7 x 7 (49): it loses less, and on
this scene FE+SLRX stays within the issue's 0.01 of raw SLRX, where the three-block core did not.
FE+GRX stays well below raw GRX (-0.040 with the head of 128, -0.066 with 256): the known weakness, guarded at a stated margin so that it
cannot silently grow. AUCs are pinned so any change that moves them shows.
"""

from __future__ import annotations

import numpy as np
import pytest

from fencli.detectors import grx, slrx
from fencli.enhancers import load_session
from fencli.metrics import roc_auc
from fencli.synthetic import dense_targets_scene

DETECT = {"grx": grx, "slrx": slrx}
# (raw, FE) with the shipped one-block core (head 128); the three-block core measured FE+GRX 0.8211, FE+SLRX 0.8558
# (the one-block core with head 256, issue 24, measured FE+GRX 0.8317, FE+SLRX 0.8675)
MEASURED = {"grx": (0.8978, 0.8583), "slrx": (0.8720, 0.8861)}
MARGIN = {"grx": 0.05, "slrx": 0.01}  # FE no more than this below raw; SLRX: the bar


def test_the_scene_is_the_weak_kind():
    cube, gt = dense_targets_scene()
    assert cube.shape == (100, 100, 193) and cube.dtype == np.float32
    from scipy import ndimage

    labels, n = ndimage.label(gt)
    sizes = np.bincount(labels.ravel())[1:]
    assert n == 80 and set(sizes) == {1, 2, 3, 4}  # dozens of 1-4 pixel objects, none touching
    assert 0.015 < gt.mean() < 0.025  # about 2% of the scene


@pytest.mark.parametrize("method", ["grx", "slrx"])
def test_adaptive_fen_on_many_small_dense_targets(method):
    cube, gt = dense_targets_scene()
    raw = roc_auc(DETECT[method](cube), gt)
    fe = roc_auc(DETECT[method](load_session("adaptive", device="cpu").enhance(cube)), gt)
    assert fe >= raw - MARGIN[method], (method, raw, fe)
    assert (raw, fe) == pytest.approx(MEASURED[method], abs=2e-4), (raw, fe)


def test_one_block_core_loses_less_than_three_blocks(tmp_path):
    """The design's claim on this kind, on three layouts: the smaller context is at least as good."""
    pytest.importorskip("torch")
    from export.adaptive import build
    from fencli.adaptive import AdaptiveFEN

    three = AdaptiveFEN("cpu", path=build(tmp_path / "core3.onnx", blocks=3))
    one = load_session("adaptive", device="cpu")
    assert (one.halo, three.halo) == (1, 3)
    for seed in (0, 1, 2):
        cube, gt = dense_targets_scene(seed=seed)
        y1, y3 = one.enhance(cube), three.enhance(cube)
        for method, detect in DETECT.items():
            a1, a3 = roc_auc(detect(y1), gt), roc_auc(detect(y3), gt)
            assert a1 >= a3 - 1e-3, (seed, method, a1, a3)  # measured: +0.002 to +0.012
