"""A new detector is one class: defined here, it gets its --method name, its own CLI flag (type and
default from its Option) and runs through the CLI's code path, the tiled engine and fencli.detect."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

from conftest import planted_scene
from fencli.detectors import REGISTRY, Detector, Option
from fencli.engine import detect_pass
from fencli.preprocess import minmax01
from fencli.tiles import Cube


@pytest.fixture
def meandiff():
    """Defines (and so registers) the detector; unregisters it afterwards."""

    class MeanDiff(Detector):
        """Squared distance of each pixel to the reflect-padded mean of its window; halo = radius."""

        name = "meandiff"
        summary = "distance to the window mean (a test detector)"
        options = (Option("radius", int, 2, "MeanDiff: half-side of the mean window."),)
        needs_range = True

        def configure(self, bands: int) -> None:
            self.halo = self.params["radius"]

        def score_tile(self, block, tile=None):
            x = minmax01(block, self.vrange)
            r = self.params["radius"]
            mean = scipy.ndimage.uniform_filter(x, size=(2 * r + 1, 2 * r + 1, 1), mode="reflect")
            scores = ((x - mean) ** 2).sum(-1)
            return (scores if tile is None else scores[tile.crop])[None]

    yield MeanDiff
    REGISTRY.pop("meandiff")


def _expected(cube: np.ndarray, radius: int) -> np.ndarray:
    """The same scores written out here, independently of the class."""
    x = (cube - cube.min()) / (cube.max() - cube.min())
    mean = scipy.ndimage.uniform_filter(x.astype(np.float64), size=(2 * radius + 1, 2 * radius + 1, 1), mode="reflect")
    return ((x - mean) ** 2).sum(-1)


@pytest.mark.parametrize("tile", [4, 6, 11])
def test_a_new_detector_class_tiles_exactly(meandiff, tile):
    cube, _ = planted_scene(h=23, w=19, bands=6, seed=2)
    vrange = (float(cube.min()), float(cube.max()))
    whole = meandiff(radius=3).fit(cube).score(cube)
    np.testing.assert_allclose(whole, _expected(cube, 3), rtol=1e-4)
    det = meandiff(radius=3)
    det.configure(cube.shape[2])
    det.fit(None, vrange)
    np.testing.assert_allclose(detect_pass(Cube(cube), det, bands=None, tile=tile), whole, rtol=1e-12)
    det.halo = 1  # too short a halo must show
    assert not np.allclose(detect_pass(Cube(cube), det, bands=None, tile=tile), whole, rtol=1e-6)


def test_a_new_detector_class_runs_through_the_cli_and_the_api(meandiff, tmp_path):
    import fencli
    from typer.testing import CliRunner

    from fencli.cli import _register, app

    cube, gt = planted_scene(h=23, w=19, bands=6, seed=2)
    np.save(tmp_path / "c.npy", cube)
    _register()  # the detect command now has --radius, typed int, with MeanDiff's default in its help
    help_text = " ".join(CliRunner().invoke(app, ["detect", "--help"]).output.split())
    assert "meandiff (distance to the window" in help_text and "--radius" in help_text
    assert "meandiff 2" in help_text
    args = ["detect", str(tmp_path / "c.npy"), "--method", "meandiff", "--radius", "3", "--model", "none",
            "--tile", "7", "--out", str(tmp_path / "s.npy")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), _expected(cube, 3), rtol=1e-4)
    bad = CliRunner().invoke(app, [*args[:4], "--radius", "three"])
    assert bad.exit_code == 2 and "'three' is not a valid int" in bad.output
    wrong = CliRunner().invoke(app, ["detect", str(tmp_path / "c.npy"), "--method", "grx", "--radius", "3",
                                     "--model", "none"])
    assert wrong.exit_code != 0 and "grx has no option radius" in str(wrong.exception or wrong.output)
    api = fencli.detect(cube, meandiff(radius=3), model=None, gt=gt)
    np.testing.assert_allclose(api.scores, _expected(cube, 3), rtol=1e-4)
    assert api.method == "meandiff" and api.auc is not None
