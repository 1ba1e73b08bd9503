"""The Python front door: ``import fencli`` gives what the CLI computes, with the CLI's checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import fencli
from conftest import ROOT, planted_scene, rx_reference
from fencli.metrics import roc_auc


def _cli_error(*args: object) -> str:
    proc = subprocess.run([sys.executable, "-m", "fencli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fencli: error: "), proc.stderr
    return lines[0].removeprefix("fencli: error: ")


def test_the_package_exports_a_small_typed_api():
    assert {"read_scene", "detect", "enhance", "FencliError", "GRX", "SLRX", "LRX", "Result"} <= set(fencli.__all__)
    for name in fencli.__all__:
        assert getattr(fencli, name) is not None, name
    assert (Path(fencli.__file__).parent / "py.typed").is_file()
    for fn in (fencli.detect, fencli.enhance, fencli.read_scene):
        assert "Returns" in fn.__doc__ or "return" in fn.__doc__.lower()
        assert fn.__annotations__.get("return") is not None


@pytest.mark.parametrize("cls,method,options", [(fencli.GRX, "grx", {}), (fencli.SLRX, "slrx", {"block_size": 4}),
                                                (fencli.LRX, "lrx", {"windows": (3, 7)})])
def test_a_detector_alone_equals_detect_without_a_model(cls, method, options):
    cube, gt = planted_scene(h=24, w=21, bands=8, n_anomalies=3, seed=6)
    alone = cls(**options).fit(cube).score(cube)
    res = fencli.detect(cube, method, model=None, gt=gt, **options)
    np.testing.assert_array_equal(alone, res.scores)
    assert res.model is None and res.method == method and res.auc == roc_auc(alone, gt)
    assert set(res.seconds) >= {"detect", "total"}


def test_grx_fitted_on_one_scene_scores_another_against_that_background():
    background, _ = planted_scene(h=30, w=20, bands=6, n_anomalies=0, seed=1)
    other, _ = planted_scene(h=12, w=15, bands=6, n_anomalies=2, seed=9)
    got = fencli.GRX().fit(background).score(other)
    x = background.reshape(-1, 6).astype(np.float64)
    d = other.reshape(-1, 6) - x.mean(axis=0)
    want = np.einsum("ij,jk,ik->i", d, np.linalg.pinv(np.cov(x, rowvar=False)), d).reshape(12, 15)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert not np.allclose(got, fencli.GRX().fit(other).score(other), rtol=1e-3)  # not refitted on `other`
    with pytest.raises(fencli.FencliError, match="not fitted"):
        fencli.SLRX().score(other)


def test_grx_against_the_spec_formula_through_the_api():
    cube, _ = planted_scene(h=16, w=14, bands=5, seed=4)
    np.testing.assert_allclose(fencli.detect(cube, "grx", model=None).scores, rx_reference(cube), rtol=1e-8)


def test_read_scene_then_detect_uses_the_adaptive_fen_and_the_scenes_ground_truth(tmp_path):
    from fencli.synthetic import demo_scene

    cube, gt = demo_scene()
    scipy.io.savemat(tmp_path / "demo.mat", {"data": cube, "map": gt.astype(np.uint8)})
    scene = fencli.read_scene(tmp_path / "demo.mat")
    assert scene.cube.shape == cube.shape and np.array_equal(scene.gt, gt)
    raw = fencli.detect(scene, "grx", model=None)
    fe = fencli.detect(scene, "grx")
    assert fe.model == "adaptive" and raw.model is None
    # the demo's point: roof-material targets inside fields are common spectra, rare neighbourhoods
    assert raw.auc < 0.85 and fe.auc > raw.auc + 0.1, (raw.auc, fe.auc)
    from_path = fencli.detect(tmp_path / "demo.mat", "grx")
    np.testing.assert_array_equal(from_path.scores, fe.scores)


def test_enhance_returns_the_cube_the_fen_session_gives():
    from fencli.enhancers import load_enhancer

    cube, _ = planted_scene(h=20, w=18, bands=7, seed=3)
    enhanced = fencli.enhance(cube, model="adaptive")
    assert enhanced.shape == cube.shape and enhanced.dtype == np.float32
    np.testing.assert_array_equal(enhanced, load_enhancer("adaptive").enhance(cube))
    with pytest.raises(fencli.FencliError, match="nothing to enhance"):
        fencli.enhance(cube, model="none")


@pytest.mark.parametrize("case", ["nan", "constant band", "too few bands", "too small"])
def test_the_api_refuses_what_the_cli_refuses_with_the_same_line(tmp_path, case):
    """Never a silent AUC of 0.5: one FencliError whose text is the CLI's error line."""
    cube, gt = planted_scene(h=20, w=18, bands=6, n_anomalies=3, seed=2)
    cube = cube.astype(np.float32)
    extra: list[str] = []
    kwargs: dict = {}
    if case == "nan":
        cube[5, 6, 2] = np.nan
    elif case == "constant band":
        cube[:, :, 3] = 7.0
    elif case == "too few bands":
        extra, kwargs = ["--bands", "9"], {"bands": 9}
    else:
        cube = cube[:4]
    path = tmp_path / "scene.npy"
    np.save(path, cube)
    cli = _cli_error("detect", path, "--model", "none", *extra)
    with pytest.raises(fencli.FencliError) as err:
        fencli.detect(path, "grx", model=None, **kwargs)
    assert str(err.value) == cli
    with pytest.raises(fencli.FencliError) as err:  # an array in memory: the same line, named "the scene"
        fencli.detect(cube, "grx", model=None, gt=gt[: cube.shape[0]], **kwargs)
    assert str(err.value) == cli.replace("scene.npy", "the scene")
    if case == "nan":
        assert re.search(r"1 pixel\(s\) with NaN/Inf values.*--nan fill", cli)
        filled = fencli.detect(cube, "grx", model=None, gt=gt, nan="fill")
        assert filled.auc > 0.9


def test_the_example_script_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    aucs = [float(a) for a in re.findall(r"AUC (\d\.\d{4})", proc.stdout)]
    assert len(aucs) == 4 and aucs[1] > aucs[0] + 0.1 and aucs[3] > aucs[2] + 0.03, proc.stdout
    assert "refused: the scene has 1 pixel(s) with NaN/Inf values" in proc.stdout


# --- found in review: each would have failed before its fix ----------------------------------------

def test_bands_validate_what_the_engine_meets():
    """--bands 5: a nodata value only in a dropped band does not make a pixel nodata, and a NaN in a
    kept band is found (before: a LinAlgError traceback, and tiled != whole)."""
    rng = np.random.default_rng(1)
    cube = (rng.random((30, 30, 10)) + np.linspace(0, 1, 10)).astype(np.float32)
    cube[4, 4, 9] = -9999
    cube[4, 4, 2] = np.nan
    with pytest.raises(fencli.FencliError, match=r"1 pixel\(s\) with NaN/Inf values"):
        fencli.detect(cube, "grx", model=None, bands=5, nodata=-9999)
    assert fencli.detect(cube, "grx", model=None, bands=5, nodata=-9999, nan="fill").nodata_pixels == 0
    cube[4, 4, :5] = 50  # an outlier in the kept bands, nodata only in a dropped one
    whole = fencli.detect(cube, "lrx", model=None, bands=5, nodata=-9999, tile=0, windows=(3, 7), ridge=1e-3)
    tiled = fencli.detect(cube, "lrx", model=None, bands=5, nodata=-9999, tile=8, windows=(3, 7), ridge=1e-3)
    assert whole.nodata_pixels == tiled.nodata_pixels == 0
    np.testing.assert_allclose(tiled.scores, whole.scores, rtol=1e-10)


def test_arrays_the_api_cannot_take_are_one_line():
    with pytest.raises(fencli.FencliError, match="the cube is 2-D, not H x W x bands"):
        fencli.detect(np.ones((10, 10)), "grx")
    with pytest.raises(fencli.FencliError, match="complex128 values, not real numbers"):
        fencli.detect(np.ones((10, 10, 3), complex), "grx")


def test_the_apis_ground_truth_is_checked_as_the_clis():
    cube, gt = planted_scene(h=20, w=18, bands=6, n_anomalies=3, seed=2)
    bad = gt.astype(float)
    bad[:3] = np.nan
    with pytest.raises(fencli.FencliError, match="holds values other than 0 and 1"):
        fencli.detect(cube, "grx", model=None, gt=bad)
    res = fencli.detect(cube, "grx", model=None, gt=gt[:, :, None].astype(np.uint8) * 255)  # H x W x 1, 0/255
    assert res.auc == roc_auc(res.scores, gt)


def test_a_calls_threads_do_not_outlive_it():
    from fencli import threads

    before = threads.cores()
    cube, _ = planted_scene(h=12, w=12, bands=4, seed=1)
    fencli.detect(cube, "grx", model=None, threads=1)
    assert threads.cores() == before


def test_grx_on_a_memmap_centres_once_and_keeps_nothing(tmp_path):
    cube, _ = planted_scene(h=14, w=13, bands=5, seed=3)
    np.save(tmp_path / "c.npy", cube)
    mm = np.load(tmp_path / "c.npy", mmap_mode="r")
    det = fencli.GRX()
    np.testing.assert_array_equal(det.fit_score(mm), fencli.GRX().fit(cube).score(cube))
    assert det.stats._kept is None  # handed over to score, not held


def test_a_scene_read_with_its_checks_is_not_checked_again(monkeypatch):
    import fencli.api

    cube, gt = planted_scene(h=14, w=13, bands=5, seed=3)
    scene = fencli.Scene(cube=cube, gt=gt.astype(bool), name="s", path=None, meta={})
    scene.cube, scene.meta["validation"] = fencli.api.validate_cube(cube, bands=5)
    calls = []
    monkeypatch.setattr(fencli.api, "validate_cube", lambda *a, **k: calls.append(1))
    fencli.detect(scene, "grx", model=None)
    assert calls == []  # read_scene's report serves: the same checks, not a second pass
