"""fencli's own FEN models (weights/fencli-*.onnx): shipped, traceable, torch-free, and the default.

The shipped models' AUC on the shared scenes is checked against what their metadata claims and
against the published checkpoints of the same band count (skips without ../shared).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SCENES, load_shared_scene, planted_scene

SCENE_BANDS = {"abu-airport-1": 205, "abu-airport-2": 205, "hydice": 162, "sandiego": 189}  # ../shared/README.md
from fencli.models import REPO_WEIGHTS, default_model, registry

EMBEDDED = {e.name: e for e in registry().values() if e.kind == "embedded"}
PUBLISHED = {e.source_sha256 for e in registry().values() if e.kind == "published"}
META_KEYS = ("recipe", "training_data_sha256", "training_data", "steps", "seed", "fencli_version", "auc")


def test_three_embedded_models_are_registered_and_shipped() -> None:
    assert sorted(e.bands for e in EMBEDDED.values()) == [50, 100, 200]
    for name, entry in EMBEDDED.items():
        path = REPO_WEIGHTS / f"{name}.onnx"
        assert path.is_file(), f"{path} is not shipped"
        assert 5e5 < path.stat().st_size < 8e6  # float32, about a MB
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256  # the file registered


def test_embedded_models_load_carry_metadata_and_run_without_torch(tmp_path: Path) -> None:
    """A fresh interpreter where torch cannot be imported loads each model and enhances a scene."""
    code = f"""
import json, sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch")
sys.meta_path.insert(0, _NoTorch())
import numpy as np
from fencli.enhancers import load_session
from fencli.synthetic import planted_scene
out = {{}}
for name in {sorted(EMBEDDED)!r}:
    s = load_session(name, device="cpu")
    cube, _ = planted_scene(h=17, w=19, bands=s.bands, seed=1)
    y = s.enhance(cube)
    meta = s.session.get_modelmeta().custom_metadata_map
    out[name] = {{"shape": list(y.shape), "finite": bool(np.isfinite(y).all()),
                 "moved": float(np.abs(y).max()), "meta": meta, "source": s.info.source}}
print(json.dumps(out))
assert "torch" not in sys.modules
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    for name, entry in EMBEDDED.items():
        g = got[name]
        assert g["shape"] == [17, 19, entry.bands] and g["finite"] and g["moved"] > 0.1
        meta = g["meta"]
        assert all(k in meta for k in META_KEYS), sorted(meta)
        assert g["source"] == "fencli train" and meta["name"] == name
        assert meta["training_data_sha256"] == entry.training_data_sha256 and len(entry.training_data_sha256) == 64
        assert entry.source_sha256 == ""  # the registry's published-checkpoint field stays empty
        assert meta["source_sha256"] not in PUBLISHED  # nothing published in it
        recipe = json.loads(meta["recipe"])
        assert recipe["bands"] == entry.bands and recipe["teacher_weights"] is None
        assert recipe["teacher_layer1"] is None and recipe["recipe"] == "adaptive" and meta["steps"] == "0"
        core = REPO_WEIGHTS / "adaptive-core.onnx"  # fencli's own seeded core, hashed into the recipe
        assert recipe["core_sha256"] == hashlib.sha256(core.read_bytes()).hexdigest()
        assert meta["seed"] == str(recipe["core_seed"])
        # fencli's own AUCs, recorded at ship time (export/ship.py): a regression guard that
        # test_shipped_model_auc_on_the_shared_scenes re-measures, not an external reference
        aucs = json.loads(meta["auc"])
        assert set(aucs) == {s for s in SCENES if SCENE_BANDS[s] >= entry.bands}, (name, sorted(aucs))
        assert all(set(v) == {"GRX", "SLRX", "FE+GRX", "FE+SLRX"} and all(0 < a <= 1 for a in v.values())
                   for v in aucs.values())
        assert np.mean([v["FE+GRX"] for v in aucs.values()]) > np.mean([v["GRX"] for v in aucs.values()]) + 0.01


def test_one_default_everywhere_the_adaptive_fen() -> None:
    """Issue 24: enhance, detect, bench, demo (and detect's batch) share one default, every band."""
    for command in ("enhance", "detect", "bench", "demo"):
        for bands in (205, 199, 100, 50, 49, 2):
            assert default_model(command, bands) == "adaptive", (command, bands)
            assert default_model(command, bands, exact=True) == "adaptive"  # it takes any --bands
        assert default_model(command, 1) is None  # one band: nothing to adapt to


def test_without_the_core_the_default_falls_back_to_the_largest_fixed_model(monkeypatch) -> None:
    from fencli import models

    real = models.find_installed
    monkeypatch.setattr(models, "find_installed", lambda n: None if n == models.ADAPTIVE_CORE else real(n))
    assert default_model("enhance", 205) == "fencli-200" and default_model("bench", 199) == "fencli-100"
    assert default_model("detect", 50) == "fencli-50" and default_model("demo", 49) is None
    assert default_model("enhance", 150, exact=True) is None and default_model("enhance", 50, exact=True) == "fencli-50"
    assert "fewer than the 50" in models.no_default_reason(30, None, "enhance")


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment on a fresh install: no FENCLI_WEIGHTS, an empty cache and home."""
    env = {k: v for k, v in os.environ.items() if k != "FENCLI_WEIGHTS"}
    return {**env, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def _fencli(tmp_path: Path, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fencli", *map(str, args)], capture_output=True, text=True,
                          cwd=tmp_path, env=_clean_env(tmp_path))


def test_enhance_and_detect_without_model_from_a_clean_install(tmp_path: Path) -> None:
    cube, gt = planted_scene(h=24, w=26, bands=60, n_anomalies=4, seed=3)
    np.savez(tmp_path / "scene.npz", data=cube, map=gt)
    res = _fencli(tmp_path, "enhance", "scene.npz", "--json")  # enhance: the adaptive FEN, every band
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["model_name"] == summary["model"] == "adaptive" and summary["shape"] == [24, 26, 60]
    assert (tmp_path / "scene_fen.npy").is_file()
    text = _fencli(tmp_path, "enhance", "scene.npz", "--out", "b.npy")
    assert text.returncode == 0 and "adaptive" in text.stdout

    det = _fencli(tmp_path, "detect", "scene.npz", "--json")  # detect: the adaptive FEN, every band
    assert det.returncode == 0 and det.stderr == "", det.stderr
    row = json.loads(det.stdout)
    assert row["model"] == "adaptive" and row["bands"] == 60 and row["seconds"]["enhance"] > 0
    trained = json.loads(_fencli(tmp_path, "detect", "scene.npz", "--model", "fencli-50", "--json").stdout)
    assert trained["model"] == "fencli-50" and trained["bands"] == 50
    raw = json.loads(_fencli(tmp_path, "detect", "scene.npz", "--model", "none", "--json", "--out", "raw.npy").stdout)
    assert raw["model"] is None and raw["bands"] == 60
    _fencli(tmp_path, "detect", "scene.npz", "--out", "fe.npy")
    assert not np.allclose(np.load(tmp_path / "raw.npy"), np.load(tmp_path / "fe.npy"))  # enhanced, really


def test_one_band_enhance_refuses_detect_runs_raw(tmp_path: Path) -> None:
    cube, gt = planted_scene(h=20, w=20, bands=30, n_anomalies=3, seed=2)
    np.savez(tmp_path / "thin.npz", data=cube, map=gt)
    enh = _fencli(tmp_path, "enhance", "thin.npz", "--json")  # 30 bands: the adaptive FEN takes them
    assert enh.returncode == 0 and json.loads(enh.stdout)["model_name"] == "adaptive", enh.stderr
    det = _fencli(tmp_path, "detect", "thin.npz", "--json")  # the adaptive FEN takes any band count
    assert det.returncode == 0 and json.loads(det.stdout)["model"] == "adaptive" and det.stderr == ""
    np.savez(tmp_path / "one.npz", data=cube[..., :1], map=gt)  # one band: nothing to adapt to
    enh = _fencli(tmp_path, "enhance", "one.npz")
    assert enh.returncode == 2 and len(enh.stderr.strip().splitlines()) == 1
    assert "1 band(s); the adaptive FEN needs at least 2" in enh.stderr
    assert not (tmp_path / "one_fen.npz").exists() and not (tmp_path / "one_fen.npy").exists()
    det = _fencli(tmp_path, "detect", "one.npz", "--json")
    assert det.returncode == 0 and json.loads(det.stdout)["model"] is None
    assert det.stderr.strip().splitlines() == [
        "fencli: the scene has 1 band(s); the adaptive FEN needs at least 2: "
        "ran raw GRX (--model none: raw without this note)"]


def test_bench_default_pairs_raw_and_adaptive_rows(tmp_path: Path) -> None:
    res = _fencli(tmp_path, "bench", "demo", "--methods", "grx", "--repeat", "1", "--warmup", "0",
                  "--reference", "none", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [(r["model"], r["bands"]) for r in rows] == [(None, 200), ("adaptive", 200)]
    assert rows[1]["auc"] > rows[0]["auc"] + 0.1


def test_models_lists_embedded_and_published(tmp_path: Path) -> None:
    res = _fencli(tmp_path, "models", "--json")
    rows = {r["name"]: r for r in json.loads(res.stdout)["models"]}
    assert {rows[n]["kind"] for n in EMBEDDED} == {"embedded"} and all(rows[n]["installed"] for n in EMBEDDED)
    assert rows["ferd-200-supp"]["kind"] == "published" and rows["ferd-200-supp"]["installed"] is False


# --- quality on the shared scenes ------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_shipped_model_auc_on_the_shared_scenes(name: str, auc_reference: dict) -> None:
    """FE+GRX and FE+SLRX equal the AUCs the model carries; the FE+GRX mean stays near the published
    checkpoint of the same band count and well above raw GRX.

    Issue 14's check was within 0.005 of the published mean (three-block core: -0.0031 at 50 bands,
    +0.0054 at 100, -0.0033 at 200). The one-block core of issue 24 (0.44x the multiply-adds) measures
    -0.0051, +0.0041 and -0.0059: the bound is 0.0065, a deliberate trade named in the README."""
    from fencli.engine import run
    from fencli.enhancers import load_session

    session = load_session(name, device="cpu")
    # fencli's own AUCs, written into the model at ship time: a regression guard (fencli measured
    # them); the external reference is auc_reference.json, from the published code
    recorded_by_fencli = json.loads(session.session.get_modelmeta().custom_metadata_map["auc"])
    ours, published, raw = [], [], []
    for scene in SCENES:
        cube, gt = load_shared_scene(scene)
        if cube.shape[2] < session.bands:
            assert scene not in recorded_by_fencli
            continue
        for method in ("grx", "slrx"):
            auc = run(cube, method, enhancer=session, gt=gt).auc
            assert auc == pytest.approx(recorded_by_fencli[scene][f"FE+{method.upper()}"], abs=6e-5), \
                (scene, method)
        ours.append(recorded_by_fencli[scene]["FE+GRX"])
        published.append(auc_reference[scene][f"ferd-{session.bands}"]["FE+GRX"]["auc"])
        raw.append(auc_reference[scene][f"ferd-{session.bands}"]["GRX"]["auc"])
    assert ours and np.mean(ours) >= np.mean(published) - 0.0065, (ours, published)
    assert np.mean(ours) > np.mean(raw) + 0.01


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_the_documented_command_rebuilds_the_shipped_weights(name: str, shared: Path, tmp_path: Path) -> None:
    """``fencli train --recipe adaptive`` on the model's training files gives its weights exactly
    (export.ship only adds the measured AUCs and the name to the metadata)."""
    pytest.importorskip("torch", reason="fencli train needs the train extra (torch)")
    import onnx
    from onnx import numpy_helper

    shipped = onnx.load(str(REPO_WEIGHTS / f"{name}.onnx"))
    meta = {p.key: p.value for p in shipped.metadata_props}
    files = [shared / "data" / f for f in json.loads(meta["training_data"])]
    res = subprocess.run([sys.executable, "-m", "fencli", "train", *map(str, files), "--bands", meta["bands"],
                          "--recipe", "adaptive", "--out", str(tmp_path / "run"), "--json", "--quiet"],
                         capture_output=True, text=True, cwd=tmp_path, env=_clean_env(tmp_path))
    assert res.returncode == 0, res.stderr
    rebuilt = onnx.load(str(tmp_path / "run" / "fen.onnx"))
    weights = {t.name: numpy_helper.to_array(t) for t in rebuilt.graph.initializer}
    assert {t.name for t in shipped.graph.initializer} == set(weights)
    for t in shipped.graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(t), weights[t.name], err_msg=t.name)
    again = {p.key: p.value for p in rebuilt.metadata_props}
    assert {k: v for k, v in meta.items() if k not in ("auc", "name", "train_seconds")} == again


def test_batch_default_is_the_adaptive_fen_and_json_names_it(tmp_path: Path) -> None:
    """Many scenes (--out-dir) without --model: the same default as every command, named in the JSON."""
    for i in range(2):
        np.save(tmp_path / f"s{i}.npy", planted_scene(h=18, w=20, bands=40 + 20 * i, seed=30 + i)[0])
    res = _fencli(tmp_path, "detect", "s0.npy", "s1.npy", "--out-dir", "maps", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["scenes"]
    assert [(r["model"], r["bands"]) for r in rows] == [("adaptive", 40), ("adaptive", 60)]
