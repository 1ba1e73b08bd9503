"""Many scenes per command: outputs, summary, resume, one corrupt file does not stop the batch."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fencli.batch import expand_inputs, run_batch, scene_names
from fencli.detectors import grx
from fencli.errors import FencliError
from fencli.synthetic import planted_scene


@pytest.fixture
def campaign(tmp_path):
    d = tmp_path / "scenes"
    d.mkdir()
    cubes = {}
    for i, (h, w) in enumerate([(17, 21), (24, 9), (12, 12)]):
        cubes[f"s{i}"] = planted_scene(h, w, 8, n_anomalies=2, seed=i)[0]
        np.save(d / f"s{i}.npy", cubes[f"s{i}"])
    (d / "bad.npy").write_bytes(b"\x93NUMPY garbage, not an array")
    (d / "notes.txt").write_text("not a scene")
    return d, cubes


def test_batch_writes_every_good_scene_and_reports_the_bad_one(campaign, tmp_path):
    d, cubes = campaign
    out = tmp_path / "out"
    summary = run_batch([d], out, method="grx", progress=False)
    assert summary.counts() == {"ok": 3, "skipped": 0, "error": 1}
    assert summary.failed == 1
    for name, cube in cubes.items():
        np.testing.assert_allclose(np.load(out / f"{name}.grx.npy"), grx(cube), rtol=1e-5)
    rows = {r["scene"]: r for r in json.loads((out / "summary.json").read_text())["scenes"]}
    assert rows["bad"]["status"] == "error" and "npy" in rows["bad"]["error"].lower()
    assert rows["s1"]["shape"] == [24, 9, 8] and rows["s1"]["status"] == "ok"
    with open(out / "summary.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["scene"] for r in csv_rows] == [r.scene for r in summary.rows] == ["bad", "s0", "s1", "s2"]
    assert not list(out.glob(".*.tmp*")) and not list(out.glob("*.tmp*"))


def test_batch_resumes_and_force_recomputes(campaign, tmp_path):
    d, _ = campaign
    out = tmp_path / "out"
    run_batch([d / "s0.npy"], out, progress=False)
    stamp = (out / "s0.grx.npy").stat().st_mtime_ns
    calls = []

    def process(path, dest):
        calls.append(path.name)
        np.save(dest, np.zeros(3))
        return {"shape": [1, 1, 1], "bands": 1, "auc": None, "seconds": 0.0}

    summary = run_batch([d / "s0.npy", d / "s1.npy"], out, process=process, progress=False)
    assert calls == ["s1.npy"]
    assert [r.status for r in summary.rows] == ["skipped", "ok"]
    first = json.loads((out / "summary.json").read_text())["scenes"][0]
    assert first["status"] == "skipped" and first["shape"] and first["bands"] and first["seconds"]  # kept
    assert (out / "s0.grx.npy").stat().st_mtime_ns == stamp
    run_batch([d / "s0.npy"], out, process=process, force=True, progress=False)
    assert calls == ["s1.npy", "s0.npy"]


def test_inputs_expand_globs_and_dedupe_and_names_do_not_collide(campaign, tmp_path):
    d, _ = campaign
    paths = expand_inputs([str(d / "s*.npy"), d / "s0.npy"])
    assert [p.name for p in paths] == ["s0.npy", "s1.npy", "s2.npy"]
    with pytest.raises(FencliError, match="no such file"):
        expand_inputs([tmp_path / "missing.npy"])
    with pytest.raises(FencliError, match="matches no file"):
        expand_inputs([str(tmp_path / "nothing*.mat")])
    (tmp_path / "other").mkdir()
    np.save(tmp_path / "other" / "s0.npy", np.zeros((5, 5, 2)))
    names = scene_names([d / "s0.npy", tmp_path / "other" / "s0.npy"])
    assert len(set(names)) == 2 and all(n.endswith("s0") for n in names)


def fencli(*args, cwd=None):
    import subprocess
    import sys

    from conftest import ROOT

    return subprocess.run([sys.executable, "-m", "fencli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_batch_exits_nonzero_naming_the_failures(campaign, tmp_path):
    d, cubes = campaign
    out = tmp_path / "maps"
    r = fencli("detect", d, "--model", "none", "--out-dir", out, "--json")
    assert r.returncode != 0 and "1 of 4 scenes failed" in r.stderr and "Traceback" not in r.stderr
    report = json.loads(r.stdout)
    assert report["counts"] == {"ok": 3, "skipped": 0, "error": 1}
    np.testing.assert_allclose(np.load(out / "s2.grx.npy"), grx(cubes["s2"]), rtol=1e-5)


def test_cli_several_scenes_need_out_dir(campaign):
    from fencli.cli.detect import detect

    d, _ = campaign
    with pytest.raises(FencliError, match="--out-dir"):
        detect([d / "s0.npy", d / "s1.npy"])


def test_cli_single_scene_tiled_keeps_the_json_contract(campaign, tmp_path):
    d, cubes = campaign
    r = fencli("detect", d / "s0.npy", "--model", "none", "--json", "--out", tmp_path / "b.npy", "--tile", "6")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert {"scene", "shape", "bands", "method", "model", "auc", "metrics", "seconds", "out"} <= set(row)
    assert {"read", "enhance", "detect", "total"} <= set(row["seconds"]) and row["shape"] == [17, 21, 8]
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), grx(cubes["s0"]), rtol=1e-5)
