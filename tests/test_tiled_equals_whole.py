"""Tiled runs of the engine equal whole-scene runs, at the tolerances :mod:`fencli.engine` and the
README state (:data:`fencli.engine.TILED_RTOL`): raw detectors 1e-10 (one numerical path, whole scene
= one tile), the FEN output 1e-6 (ONNX Runtime may pick other kernels for other tile shapes) and FE
detections 2e-5 (the detectors carry those differences), with fencli's shipped models; the CLI's enhance output (whole and --tile) against ONNX
Runtime fed by hand with the reference preprocessing."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from fencli.detectors import DETECTORS
from fencli.engine import TILED_RTOL, enhance, run
from fencli.models import resolve_model
from fencli.enhancers import load_session
from fencli.synthetic import planted_scene
from fencli.tiles import create_raw

BANDS = 50


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    return planted_scene(45, 38, BANDS, n_anomalies=4, seed=11)


@pytest.mark.parametrize("model", [None, "fencli-50", "adaptive"])
@pytest.mark.parametrize("method", sorted(DETECTORS))
def test_tiled_detection_equals_whole(scene, tmp_path, model, method):
    cube, gt = scene
    np.save(tmp_path / "c.npy", cube)
    fen = load_session(model, "cpu") if model else None
    whole = run(cube, method, enhancer=fen, gt=gt, tile=0)
    tiled = run(tmp_path / "c.npy", method, enhancer=fen, gt=gt, tile=16, workdir=tmp_path)
    assert rel(tiled.scores, whole.scores) <= TILED_RTOL["fe" if model else "raw"], (model, method)
    assert abs(tiled.auc - whole.auc) <= 1e-6
    assert not list(tmp_path.glob("fencli-*"))  # the temporary enhanced cube is gone


@pytest.mark.parametrize("model", ["fencli-50", "adaptive"])
def test_tiled_enhance_equals_whole(scene, tmp_path, model):
    cube = scene[0]
    fen = load_session(model, "cpu")
    whole = enhance(cube, fen)
    with create_raw(tmp_path / "y.npy", whole.shape) as out:
        assert enhance(cube, fen, tile=13, out=out) is None
    assert rel(np.load(tmp_path / "y.npy"), whole) <= TILED_RTOL["fen"]


def by_hand(cube: np.ndarray, path) -> np.ndarray:
    """The reference's FEN input (one global min-max to [-1, 1], times 0.1) fed to ONNX Runtime."""
    x = cube[..., :BANDS].astype(np.float64)
    x = ((x - x.min()) / (x.max() - x.min()) * 2 - 1) * 0.1
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x.transpose(2, 0, 1)[None].astype(np.float32)})[0]
    return y[0].transpose(1, 2, 0)


@pytest.mark.parametrize("tile", [None, 14])
def test_cli_enhance_whole_and_tiled_equal_onnx_runtime_by_hand(scene, tmp_path, tile):
    from typer.testing import CliRunner

    from fencli.cli import _register, app

    _register()
    cube = scene[0]
    np.save(tmp_path / "c.npy", cube)
    args = ["enhance", str(tmp_path / "c.npy"), "--model", "fencli-50", "--out", str(tmp_path / "y.npy"), "--json"]
    res = CliRunner().invoke(app, args + (["--tile", str(tile)] if tile else []))
    assert res.exit_code == 0, res.output
    assert ('"tiled": true' in res.stdout) == bool(tile)
    assert rel(np.load(tmp_path / "y.npy"), by_hand(cube, resolve_model("fencli-50"))) <= 1e-6
    again = CliRunner().invoke(app, args + ["--tile", "14"])  # an existing output is refused, untouched
    assert again.exit_code != 0 and "exists" in str(again.exception)
    bad = CliRunner().invoke(app, args[:-3] + ["--out", str(tmp_path / "y.h5"), "--tile", "14"])
    assert "--tile streams the enhanced cube to a .npy file" in str(bad.exception)
    assert not (tmp_path / "y.h5").exists()


def test_out_of_core_switch_follows_the_memory_sized_tile(scene, monkeypatch):
    """tile=None: whole in memory when the scene fits one memory-sized tile, tiles when it does not."""
    from fencli import engine

    cube = scene[0]
    calls: list[int] = []
    whole = run(cube, "grx", progress=calls.append).scores
    assert calls == []  # the one-tile case: no passes over tiles
    monkeypatch.setattr(engine, "default_tile", lambda bands: 16)
    tiled = run(cube, "grx", progress=calls.append).scores
    assert sum(calls) == 2 * cube.shape[0] * cube.shape[1]  # scan and detect passes, every pixel once
    assert rel(tiled, whole) <= 1e-9
    assert engine.plan_tile(cube.shape, BANDS, None) == 16 and engine.plan_tile((9, 9, 3), 3, None) == 0


def test_a_known_band_range_spares_the_range_only_scan(scene, tmp_path, monkeypatch):
    """validate_cube's per-band range replaces the scan when no statistics are needed (fixed FEN,
    LRX), with the same result; the adaptive FEN and GRX still scan (they need statistics)."""
    from fencli import engine
    from fencli.io import validate_cube

    cube = scene[0]
    _, checked = validate_cube(cube)
    band_range = (checked["band_min"], checked["band_max"])
    fen = load_session("fencli-50", "cpu")
    expected = run(cube, "grx", enhancer=fen, tile=16).scores
    scans = []
    real_task = engine._scan_task
    monkeypatch.setattr(engine, "_scan_task", lambda *a, **k: scans.append(1) or real_task(*a, **k))
    got = run(cube, "grx", enhancer=fen, tile=16, band_range=band_range).scores
    assert scans == [] and rel(got, expected) == 0
    run(cube, "grx", tile=16, band_range=band_range)  # raw GRX needs the statistics: it scans
    assert scans
