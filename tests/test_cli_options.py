"""`fencli detect` options checked against answers computed here, independently of fencli's detectors.

Each test would fail if the option were ignored, mis-wired or applied to the wrong array.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import pair_auc, rx_reference
from fencli.errors import FencliError

SHAPE = (14, 15, 6)


def _cube(seed: int = 0, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) + np.linspace(0, 2, shape[-1])).astype(np.float32)


def _detect(*args):
    from typer.testing import CliRunner

    from fencli.cli import _register, app

    _register()
    return CliRunner().invoke(app, ["detect", *map(str, args)])


def _scores(tmp_path: Path, *args) -> np.ndarray:
    out = tmp_path / "scores.npy"
    out.unlink(missing_ok=True)
    res = _detect(*args, "--model", "none", "--out", out)
    assert res.exit_code == 0, res.output
    return np.load(out)


def _error(*args) -> str:
    res = _detect(*args, "--model", "none")
    assert isinstance(res.exception, FencliError), res.output
    return str(res.exception)


def test_key_picks_the_named_array(tmp_path):
    big, small = _cube(1, (16, 16, 6)), _cube(2)
    np.savez(tmp_path / "two.npz", big=big, small=small)
    np.testing.assert_allclose(_scores(tmp_path, tmp_path / "two.npz"), rx_reference(big), rtol=1e-7)
    np.testing.assert_allclose(_scores(tmp_path, tmp_path / "two.npz", "--key", "small"), rx_reference(small),
                               rtol=1e-7)
    assert "nope" in _error(tmp_path / "two.npz", "--key", "nope")


def test_layout_undoes_the_stored_axis_order(tmp_path):
    cube = _cube(3)
    np.save(tmp_path / "bhw.npy", np.ascontiguousarray(cube.transpose(2, 0, 1)))
    np.testing.assert_allclose(_scores(tmp_path, tmp_path / "bhw.npy", "--layout", "bhw"), rx_reference(cube),
                               rtol=1e-7)


def test_nan_fill_uses_band_means_and_error_is_the_default(tmp_path):
    cube = _cube(4)
    cube[2, 3, 1] = np.nan
    cube[5, 6, :] = np.inf
    np.save(tmp_path / "nan.npy", cube)
    assert "--nan fill" in _error(tmp_path / "nan.npy")
    filled = cube.copy()
    bad = ~np.isfinite(filled)
    means = np.array([cube[..., b][~bad[..., b]].astype(np.float64).mean() for b in range(cube.shape[-1])])
    filled[bad] = np.broadcast_to(means.astype(np.float32), filled.shape)[bad]
    np.testing.assert_allclose(_scores(tmp_path, tmp_path / "nan.npy", "--nan", "fill"), rx_reference(filled),
                               rtol=1e-6, atol=1e-9)


def test_constant_band_keep_equals_rx_without_that_band(tmp_path):
    cube = _cube(5)
    cube[..., 2] = 7.0
    np.save(tmp_path / "flat.npy", cube)
    assert "--constant-bands keep" in _error(tmp_path / "flat.npy")
    kept = _scores(tmp_path, tmp_path / "flat.npy", "--constant-bands", "keep")
    np.testing.assert_allclose(kept, rx_reference(np.delete(cube, 2, axis=-1)), rtol=1e-6)


def test_force_guards_an_existing_output(tmp_path):
    cube = _cube(6)
    np.save(tmp_path / "c.npy", cube)
    out = tmp_path / "map.npy"
    np.save(out, np.zeros(3))
    res = _detect(tmp_path / "c.npy", "--model", "none", "--out", out)
    assert isinstance(res.exception, FencliError) and "exists" in str(res.exception)
    np.testing.assert_array_equal(np.load(out), np.zeros(3))  # untouched
    res = _detect(tmp_path / "c.npy", "--model", "none", "--out", out, "--force")
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(np.load(out), rx_reference(cube), rtol=1e-7)


def test_slrx_block_options_reach_the_detector(tmp_path):
    from test_detectors import slrx_loop

    cube = _cube(7, (12, 13, 10))
    np.save(tmp_path / "c.npy", cube)
    got = _scores(tmp_path, tmp_path / "c.npy", "--method", "slrx", "--block-size", "3")
    np.testing.assert_allclose(got, slrx_loop(cube, 3), rtol=1e-6, atol=1e-7)
    got = _scores(tmp_path, tmp_path / "c.npy", "--method", "slrx", "--block-num", "5")  # 10 // 5 = 2 px blocks
    np.testing.assert_allclose(got, slrx_loop(cube, 2), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["slrx", "lrx"])
def test_threads_caps_the_detectors_workers(tmp_path, monkeypatch, method):
    """--threads N: SLRX and LRX split their work over at most N threads (else one per core)."""
    from fencli import threads

    monkeypatch.setattr(threads, "os", type("Os", (), {"sched_getaffinity": lambda _: {0, 1, 2, 3},
                                                         "cpu_count": lambda: 4}))
    seen = []
    parallel = threads.parallel
    monkeypatch.setattr(threads, "parallel", lambda fn, *args: seen.append(len(args[0])) or parallel(fn, *args))
    cube = _cube(9, (16, 30, 6))
    np.save(tmp_path / "c.npy", cube)
    windows = ("--windows", "3", "7") if method == "lrx" else ("--block-size", "2")
    many = _scores(tmp_path, tmp_path / "c.npy", "--method", method, *windows)
    assert max(seen) == 4
    seen.clear()
    one = _scores(tmp_path, tmp_path / "c.npy", "--method", method, *windows, "--threads", "1")
    assert max(seen) == 1
    np.testing.assert_allclose(one, many, rtol=1e-9, atol=1e-12)
    assert "at least 1" in _error(tmp_path / "c.npy", "--method", method, "--threads", "0")


def test_lrx_windows_reach_the_detector(tmp_path):
    spectral = pytest.importorskip("spectral")
    cube = _cube(8, (11, 12, 5)).astype(np.float64)
    np.save(tmp_path / "c.npy", cube)
    unit = (cube - cube.min()) / (cube.max() - cube.min())
    got = _scores(tmp_path, tmp_path / "c.npy", "--method", "lrx", "--windows", "3", "7")
    np.testing.assert_allclose(got, spectral.rx(unit, window=(3, 7)), rtol=2e-5)
    assert "odd" in _error(tmp_path / "c.npy", "--method", "lrx", "--windows", "4", "7")


def test_batch_reports_each_scenes_auc_against_its_ground_truth(tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    want = {}
    for i in range(2):
        cube = _cube(10 + i)
        gt = np.zeros(SHAPE[:2], np.uint8)
        gt[3 + i, 4:6] = 1
        cube[gt == 1] += 0.8 * i  # s0's targets are plain background, s1's stand out
        np.savez(scenes / f"s{i}.npz", data=cube, map=gt)
        want[f"s{i}"] = pair_auc(rx_reference(cube), gt)
    res = _detect(scenes, "--model", "none", "--out-dir", tmp_path / "out", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["scene"]: r for r in json.loads(res.output)["scenes"]}
    for name, auc in want.items():
        assert rows[name]["auc"] == pytest.approx(auc, abs=1e-12)
    assert want["s0"] != pytest.approx(want["s1"], abs=1e-6)


@pytest.mark.parametrize("flaw", ["nan", "constant band"])
def test_tiled_and_batch_runs_validate_like_a_whole_scene_run(tmp_path, flaw):
    cube = _cube(12)
    if flaw == "nan":
        cube[4, 5, 2] = np.nan
    else:
        cube[..., 3] = 2.0
    scene = tmp_path / "flawed.npy"
    np.save(scene, cube)
    whole = _error(scene, "--tile", "0")  # --tile 0: in memory
    assert ("--nan fill" if flaw == "nan" else "--constant-bands keep") in whole
    assert _error(scene, "--tile", "6") == whole  # streamed: same check, same message
    folder = tmp_path / "many"
    folder.mkdir()
    np.save(folder / "flawed.npy", cube)
    np.save(folder / "good.npy", _cube(13))
    res = _detect(folder, "--model", "none", "--out-dir", tmp_path / "out", "--json")
    rows = {r["scene"]: r for r in json.loads(res.stdout)["scenes"]}
    assert rows["good"]["status"] == "ok" and rows["flawed"]["status"] == "error"
    assert rows["flawed"]["error"] == whole  # the same file name, the same one line
