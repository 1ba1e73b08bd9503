"""``fencli bench``: rows equal the pipeline's, HAD100 layout, written outputs, clear errors."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fencli import bench as B
from fencli.errors import FencliError
from fencli.metrics import roc_auc
from fencli.engine import run
from fencli.synthetic import demo_scene, planted_scene


class NoiseEnhancer:
    """A stand-in FEN: replaces the cube by seeded noise, so an FE row that skipped it would show."""

    def __init__(self, bands: int, name: str = "noise-fen") -> None:
        self.bands, self.name = bands, name

    def check_bands(self, available: int) -> None:
        assert available >= self.bands

    def enhance(self, cube: np.ndarray) -> np.ndarray:
        assert cube.shape[2] == self.bands
        return np.random.default_rng(0).random(cube.shape, dtype=np.float32)



def textbook_auc(cube: np.ndarray, gt: np.ndarray) -> float:
    """GRX AUC computed without fencli: the textbook RX and the AUC by its pair-count definition."""
    from conftest import pair_auc, rx_reference

    return pair_auc(rx_reference(cube), gt)

def cli(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """Run ``fencli ARGS`` in-process through the real entry point (error handling included)."""
    from fencli.cli import main

    monkeypatch.setattr(sys, "argv", ["fencli", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_shared(tmp_path, monkeypatch):
    """No shared scenes and no reference: the bench falls back to the synthetic demo scene."""
    monkeypatch.setenv("FENCLI_SHARED", str(tmp_path / "absent"))


def test_demo_json_rows_equal_pipeline(no_shared, capsys, monkeypatch):
    import time

    start = time.perf_counter()
    code, out, err = cli(["bench", "--model", "none", "--methods", "grx", "--repeat", "3",
                          "--warmup", "0", "--json"], capsys, monkeypatch)
    wall = time.perf_counter() - start
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 1
    row = rows[0]
    assert {"scene", "method", "model", "bands", "auc", "metrics", "seconds"} <= set(row)
    cube, gt = demo_scene()
    expected = run(cube, "grx", gt=gt)
    assert (row["scene"], row["method"], row["model"], row["bands"]) == ("demo", "grx", None, 200)
    assert row["auc"] == pytest.approx(textbook_auc(cube, gt), abs=1e-9) and 0.5 < row["auc"] < 1.0
    assert row["metrics"]["snpr"] == pytest.approx(expected.metrics["snpr"])
    s = row["seconds"]  # the exact best/median arithmetic: test_measure_takes_best_and_median_...
    assert s["enhance"] == {"best": 0.0, "median": 0.0}  # raw row: nothing to enhance
    assert 0 < s["detect"]["best"] <= s["detect"]["median"] and 3 * s["detect"]["best"] <= wall
    assert s["total"] == pytest.approx(s["detect"], abs=1e-12)  # total = enhance + detect, run by run
    assert row["reference_auc"] is None and row["auc_diff"] is None


def test_measure_takes_best_and_median_of_the_timed_runs_after_the_warmups(monkeypatch):
    """Known per-run seconds in, known figures out: the warm-up runs never count, ``best`` is the
    minimum and ``median`` the median of each part, and ``total`` is taken run by run."""
    from types import SimpleNamespace

    runs = iter([(5.0, 9.0), (0.0, 0.3), (0.4, 0.1), (0.1, 0.2)])  # (enhance, detect): a warm-up, 3 timed
    calls = []

    def fake_run(cube, method, **kw):
        enhance, detect = next(runs)
        calls.append(method)
        return SimpleNamespace(seconds={"enhance": enhance, "detect": detect}, model=None, bands=4,
                               auc=0.25 * len(calls), metrics={})

    monkeypatch.setattr(B, "run", fake_run)
    row = B.measure(B.BenchScene("s", np.zeros((2, 2, 4)), None), "grx", repeat=3, warmup=1)
    assert calls == ["grx"] * 4 and row.auc == 1.0  # the last run's result
    assert row.seconds == {"enhance": {"best": 0.0, "median": 0.1}, "detect": {"best": 0.1, "median": 0.2},
                           "total": {"best": 0.3, "median": pytest.approx(0.3)}}
    assert row.seconds["total"]["best"] == pytest.approx(0.3)


def test_fe_rows_use_the_enhancer_and_model_bands():
    cube, gt = planted_scene(24, 28, 110, n_anomalies=4, seed=3)
    scene = B.BenchScene("s", cube, gt)
    fen = NoiseEnhancer(100)  # SLRX blocks: 100 // 25 = 4 pixels
    rows, notes = B.bench([scene], ["grx", "slrx"], [fen], repeat=2, warmup=1)
    assert [(r.method, r.model, r.bands) for r in rows] == [
        ("grx", None, 100), ("grx", "noise-fen", 100), ("slrx", None, 100), ("slrx", "noise-fen", 100)]
    assert notes == []
    for r in rows:
        ref = run(cube, r.method, enhancer=fen if r.model else None, bands=100, gt=gt)
        assert r.auc == ref.auc
        assert r.auc == pytest.approx(roc_auc(r.result.scores, gt))
    raw, fe = rows[0], rows[1]  # the noise was applied: the FE row is the textbook GRX of the noise
    assert raw.auc == pytest.approx(textbook_auc(cube[..., :100], gt), abs=1e-9)
    assert fe.auc == pytest.approx(textbook_auc(fen.enhance(cube[..., :100]), gt), abs=1e-9)
    assert abs(raw.auc - fe.auc) > 0.1
    assert fe.seconds["enhance"]["best"] > 0


def test_model_with_more_bands_than_the_scene_is_noted_not_run():
    cube, gt = planted_scene(20, 20, 25, n_anomalies=3)
    rows, notes = B.bench([B.BenchScene("small", cube, gt)], ["grx"], [NoiseEnhancer(30)], repeat=1, warmup=0)
    assert [(r.model, r.bands) for r in rows] == [(None, 25)]
    assert len(notes) == 1 and "30" in notes[0] and "small" in notes[0]


def test_reference_lookup_and_cli_reference_file(no_shared, tmp_path, capsys, monkeypatch):
    ref = {"demo": {"shape": [100, 100, 200], "anomalies": 48,
                    "ferd-100": {"GRX": {"auc": 0.25}},
                    "ferd-200-supp": {"GRX": {"auc": 0.75}, "FE+GRX": {"auc": 0.9}}}}
    assert B.reference_auc(ref, "demo", "grx", None, 200) == 0.75
    assert B.reference_auc(ref, "demo", "grx", None, 100) == 0.25
    assert B.reference_auc(ref, "demo", "grx", "ferd-200-supp", 200) == 0.9
    assert B.reference_auc(ref, "demo", "slrx", None, 200) is None
    assert B.reference_auc(ref, "other", "grx", None, 200) is None
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(ref))
    code, out, err = cli(["bench", "demo", "--model", "none", "--methods", "grx", "--repeat", "1",
                          "--warmup", "0", "--reference", str(path), "--json"], capsys, monkeypatch)
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["reference_auc"] == 0.75
    assert row["auc_diff"] == pytest.approx(row["auc"] - 0.75)


def write_had100(root: Path, n: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """A HAD100-shaped folder: cubes as .npy, masks as 3-channel PNGs with the anomalies in channel 1
    and decoys in channels 0 and 2 (a reader of the wrong channel gets a different mask)."""
    from PIL import Image

    (root / "test" / "aviris_ng").mkdir(parents=True)
    (root / "ground_truth" / "aviris_ng").mkdir(parents=True)
    scenes = []
    for i in range(n):
        cube, gt = planted_scene(20, 24, 36, n_anomalies=3, seed=10 + i, fraction=0.3 + 0.2 * i)
        np.save(root / "test" / "aviris_ng" / f"scene{i:02d}.npy", cube)
        rgb = np.zeros((*gt.shape, 3), np.uint8)
        rgb[..., 1] = gt * 255
        rgb[:3, :3, 0] = 255
        rgb[-4:, -4:, 2] = 255
        Image.fromarray(rgb, "RGB").save(root / "ground_truth" / "aviris_ng" / f"scene{i:02d}.png")
        scenes.append((cube, gt))
    return scenes


def test_had100_reader_and_means(tmp_path, capsys, monkeypatch):
    scenes = write_had100(tmp_path)
    found = B.had100_scenes(tmp_path)
    assert [f[0] for f in found] == ["scene00", "scene01"]
    np.testing.assert_array_equal(B.read_had100_gt(found[1][2]), scenes[1][1])
    rows, means, notes = B.bench_had100(tmp_path, ["grx"], [NoiseEnhancer(36)])
    assert [(r.scene, r.model) for r in rows] == [("scene00", None), ("scene00", "noise-fen"),
                                                 ("scene01", None), ("scene01", "noise-fen")]
    for r, (cube, gt) in zip(rows[::2], scenes):
        assert r.auc == pytest.approx(textbook_auc(cube, gt), abs=1e-9)
    assert [m["model"] for m in means] == [None, "noise-fen"]
    assert means[0]["auc"] == pytest.approx((rows[0].auc + rows[2].auc) / 2)
    assert means[0]["scenes"] == 2
    code, out, err = cli(["bench", "--had100", str(tmp_path), "--model", "none", "--methods", "grx", "--json"],
                         capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    assert [r["scene"] for r in doc["scenes"]] == ["scene00", "scene01"]
    assert doc["mean"][0]["auc"] == pytest.approx(means[0]["auc"])


def test_out_dir_writes_markdown_csv_and_figure(no_shared, tmp_path, capsys, monkeypatch):
    out = tmp_path / "bench"
    args = ["bench", "--model", "none", "--methods", "grx", "--repeat", "1", "--warmup", "0", "--out-dir", str(out)]
    code, text, err = cli(args, capsys, monkeypatch)
    assert code == 0, err
    assert "demo" in text and "GRX" in text
    md = (out / "bench.md").read_text()
    assert "| scene | method |" in md and "| demo | grx | none | 200 |" in md
    with open(out / "bench.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    cube, gt = demo_scene()
    assert float(row["auc"]) == pytest.approx(textbook_auc(cube, gt), abs=1e-9)
    png = (out / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    code, _, err = cli(args, capsys, monkeypatch)
    assert code == 2 and "exists" in err and "--force" in err and "Traceback" not in err
    code, _, err = cli(args + ["--force"], capsys, monkeypatch)
    assert code == 0, err


@pytest.mark.parametrize("args, message", [
    (["--methods", "grx,bogus"], "unknown method 'bogus'"),
    (["--methods", " , "], "no method"),
    (["--repeat", "0"], "--repeat must be >= 1"),
    (["--reference", "/nonexistent/ref.json"], "no such reference file"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["/nonexistent/scene.mat"], "nonexistent"),
])
def test_bad_options_are_one_line_errors(args, message, no_shared, capsys, monkeypatch):
    code, out, err = cli(["bench", "--model", "none", *args], capsys, monkeypatch)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_had100_folders(tmp_path, capsys, monkeypatch):
    with pytest.raises(FencliError, match="not a HAD100 folder"):
        B.had100_scenes(tmp_path)
    (tmp_path / "test" / "aviris_ng").mkdir(parents=True)
    code, _, err = cli(["bench", "--had100", str(tmp_path), "--model", "none"], capsys, monkeypatch)
    assert code == 2 and "no HAD100 scenes" in err and "Traceback" not in err
    np.save(tmp_path / "test" / "aviris_ng" / "a.npy", np.zeros((8, 8, 4), np.float32))
    with pytest.raises(FencliError, match="a.npy has no ground truth"):
        B.had100_scenes(tmp_path)
    (tmp_path / "ground_truth" / "aviris_ng").mkdir(parents=True)
    (tmp_path / "ground_truth" / "aviris_ng" / "a.png").write_bytes(b"not a png")
    with pytest.raises(FencliError, match="not a readable PNG"):
        B.bench_had100(tmp_path, ["grx"])
