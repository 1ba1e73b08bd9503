"""fencli.runtime (ONNX Runtime session, enhance), fencli.models (lookup) and the export /
models / enhance commands, on small synthetic models; one run in a process where torch is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fencli import models as fmodels
from fencli.errors import FencliError
from fencli.preprocess import fen_input
from fencli.runtime import FENSession, cuda_usable, get_session

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """(torch FEN, its ONNX path, its checkpoint folder) for a random 12-band model."""
    pytest.importorskip("torch", reason="a random FEN is made with torch (pip install 'fencli[export]')")
    from export.onnx_export import export_model
    from tests.test_fen import random_fen, save_checkpoint

    model = random_fen(bands=12, seed=11)
    base = tmp_path_factory.mktemp("rt")
    path = export_model(model, base / "syn-12.onnx", source="syn", source_sha256="ab" * 32)
    return model, path, save_checkpoint(model, base / "ckpt-12")


@pytest.fixture(scope="module")
def shipped() -> Path:
    """A fencli FEN ONNX file that takes no torch to make: the embedded fencli-50 (50 bands). The tests
    of the runtime alone use it, so they run on a runtime-only install; ``synthetic`` needs torch."""
    return fmodels.REPO_WEIGHTS / "fencli-50.onnx"


def _torch_enhance(model, cube):
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(fen_input(cube[:, :, :model.bands])))[0].numpy().transpose(1, 2, 0)


def test_enhance_matches_torch_and_ignores_extra_bands(synthetic):
    from conftest import planted_scene

    model, path, _ = synthetic
    cube, _ = planted_scene(h=23, w=31, bands=15)
    cube = (cube * 1000).astype(np.uint16)  # stored integer counts, as in the public .mat files
    session = get_session(path, device="cpu", threads=1)
    assert (session.bands, session.info.variant, session.info.head_width) == (12, "plain", 128)
    assert session.info.source_sha256 == "ab" * 32 and session.device == "cpu"
    out = session.enhance(cube)
    assert out.shape == (23, 31, 12) and out.dtype == np.float32 and out.flags.c_contiguous
    ref = _torch_enhance(model, cube)
    assert np.abs(out - ref).max() / np.abs(ref).max() <= 1e-5
    cube2 = cube.copy()
    cube2[:, :, 12:] = 0  # bands past the model's must not matter (nor enter the min-max)
    np.testing.assert_array_equal(session.enhance(cube2), out)


def test_enhance_rejects_bad_scenes(shipped):
    session = get_session(shipped, device="cpu")
    with pytest.raises(FencliError, match="49 bands but model fencli-50.onnx needs 50"):
        session.enhance(np.random.rand(10, 10, 49))
    with pytest.raises(FencliError, match="4 x 9; the FEN needs at least 5 x 5"):
        session.enhance(np.random.rand(4, 9, 50))
    with pytest.raises(FencliError, match="H x W x bands"):
        session.enhance(np.random.rand(10, 12))
    bad = np.random.rand(8, 8, 50)
    bad[3, 3, 2] = np.nan
    with pytest.raises(FencliError, match="NaN"):
        session.enhance(bad)
    session.enhance(np.random.rand(5, 5, 50))  # the smallest legal scene runs


def test_model_without_fencli_metadata(tmp_path, shipped):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5, 5])])
    bare = tmp_path / "bare.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(bare))
    with pytest.raises(FencliError, match="no fencli FEN metadata"):
        FENSession(bare)
    proto = onnx.load(str(shipped))
    for p in proto.metadata_props:
        if p.key == "preprocessing":
            p.value = json.dumps({**json.loads(p.value), "scale": 1.0})
    odd = tmp_path / "odd.onnx"
    onnx.save(proto, str(odd))
    with pytest.raises(FencliError, match="preprocessing this fencli does not implement"):
        FENSession(odd)
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(FencliError, match="cannot load model"):
        FENSession(tmp_path / "junk.onnx")


def test_devices_and_threads(shipped):
    path = shipped
    if not cuda_usable():
        with pytest.raises(FencliError, match="no usable CUDA GPU"):
            FENSession(path, device="cuda")
        assert FENSession(path, device="auto").device == "cpu"
    with pytest.raises(FencliError, match="device must be one of"):
        FENSession(path, device="tpu")
    with pytest.raises(FencliError, match="at least 1"):
        FENSession(path, threads=0)


def test_sessions_are_cached_per_file_device_threads(shipped, tmp_path):
    path = shipped
    assert get_session(path, "cpu", 2) is get_session(str(path), "cpu", 2)
    assert get_session(path, "cpu", 2) is not get_session(path, "cpu", 1)
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(path.read_bytes())
    first = get_session(copy, "cpu", 1)
    os.utime(copy, ns=(1, 1))  # a re-exported file (new mtime) must not reuse the old session
    assert get_session(copy, "cpu", 1) is not first


def test_resolve_model_search_order(tmp_path, monkeypatch):
    env, repo, xdg = tmp_path / "env", tmp_path / "repo", tmp_path / "xdg"
    for d, names in ((env, ["a"]), (repo, ["a", "b"]), (xdg / "fencli", ["a", "b", "c"])):
        d.mkdir(parents=True)
        for n in names:
            (d / f"{n}.onnx").write_bytes(b"")
    monkeypatch.setenv("FENCLI_WEIGHTS", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.setattr(fmodels, "REPO_WEIGHTS", repo)
    assert fmodels.resolve_model("a") == env / "a.onnx"
    assert fmodels.resolve_model("b") == repo / "b.onnx"
    assert fmodels.resolve_model("c") == xdg / "fencli" / "c.onnx"
    assert fmodels.resolve_model("none") is None and fmodels.resolve_model(None) is None
    assert fmodels.resolve_model(str(xdg / "fencli" / "a.onnx")) == xdg / "fencli" / "a.onnx"
    with pytest.raises(FencliError, match="model file .*missing.onnx does not exist"):
        fmodels.resolve_model(str(tmp_path / "missing.onnx"))
    with pytest.raises(FencliError, match="'ferd-200-supp' is not installed.*fencli export"):
        fmodels.resolve_model("ferd-200-supp")
    with pytest.raises(FencliError, match="unknown model 'nope'.*ferd-50"):
        fmodels.resolve_model("nope")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fmodels.user_cache_dir() == tmp_path / "home" / ".cache" / "fencli"


def test_registry_names_the_published_checkpoints():
    reg = {n: e for n, e in fmodels.registry().items() if e.kind == "published"}
    assert {e.kind for e in fmodels.registry().values()} == {"published", "embedded"}
    assert {n: (e.bands, e.variant, e.head_width, e.source) for n, e in reg.items()} == {
        "ferd-50": (50, "plain", 128, "50bands"), "ferd-100": (100, "plain", 128, "100bands"),
        "ferd-200": (200, "plain", 256, "200bands"),
        "ferd-200-supp": (200, "supp", 256, "200bands-supp")}
    assert all(len(e.source_sha256) == 64 and set(e.files_sha256) == {"convh.pt", "enc.pt", "pc.pt"}
               for e in reg.values())
    assert fmodels.name_for_source("/x/200bands-supp") == "ferd-200-supp"


# ---- commands ----------------------------------------------------------------------------------

def _cli(*args: str):
    from typer.testing import CliRunner

    from fencli.cli import app
    import fencli.cli.enhance, fencli.cli.export, fencli.cli.models  # noqa: E401, F401

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_export_and_models(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("FENCLI_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "ferd-200-supp.onnx"
    res = _cli("export", "--checkpoint", synthetic[2], "--variant", "supp", "--out", out, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert (summary["bands"], summary["variant"]) == (12, "supp")
    res = _cli("export", "--checkpoint", synthetic[2], "--out", out)
    assert isinstance(res.exception, FencliError) and "exists" in str(res.exception)
    res = _cli("export", "--out", out)
    assert isinstance(res.exception, FencliError) and "exactly one" in str(res.exception)
    doc = json.loads(_cli("models", "--json").output)
    listed = {m["name"]: m for m in doc["models"]}
    assert listed["ferd-200-supp"]["path"] == str(out)
    import onnxruntime

    rt = doc["runtime"]  # which ONNX Runtime build runs the FEN, and on which provider
    assert rt["onnxruntime"] == onnxruntime.__version__ and rt["packages"]
    assert rt["available_providers"] == onnxruntime.get_available_providers()
    assert rt["auto_provider"] == get_session(out, "auto").provider
    in_repo = (ROOT / "weights" / "ferd-50.onnx").is_file()  # an export a developer made; never in a clean clone
    assert listed["ferd-50"]["installed"] is in_repo  # FENCLI_WEIGHTS holds no ferd-50, the cache is empty
    import shutil

    shutil.copy(out, tmp_path / "ferd-50.onnx")  # a file of that name in FENCLI_WEIGHTS installs it, first
    listed = {m["name"]: m for m in json.loads(_cli("models", "--json").output)["models"]}
    assert listed["ferd-50"]["installed"] is True and listed["ferd-50"]["path"] == str(tmp_path / "ferd-50.onnx")


def _small_scene(tmp_path: Path, bands: int = 14) -> tuple[np.ndarray, Path]:
    from conftest import planted_scene

    cube, _ = planted_scene(h=20, w=22, bands=bands)
    src = tmp_path / "scene.npy"
    np.save(src, cube)
    return cube, src


def test_cli_enhance(synthetic, tmp_path):
    from fencli import io

    cube, src = _small_scene(tmp_path)
    res = _cli("enhance", src, "--model", synthetic[1], "--device", "cpu", "--threads", "1", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["provider"] == "CPUExecutionProvider"
    out = Path(summary["output"])
    assert out == tmp_path / "scene_fen.npy"
    assert (summary["device"], summary["provider"]) == ("cpu", "CPUExecutionProvider")
    expected = _torch_enhance(synthetic[0], cube)  # the PyTorch model itself, not fencli's session
    assert np.abs(np.load(out) - expected).max() <= 1e-5 * np.abs(expected).max()
    res = _cli("enhance", src, "--model", synthetic[1])
    assert isinstance(res.exception, FencliError) and "exists" in str(res.exception)
    mat = tmp_path / "x.mat"
    res = _cli("enhance", src, "-m", synthetic[1], "--out", mat, "--bands", "12")
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(io.read_scene(mat).cube, np.load(out))  # the same values in .mat
    for other in ("11", "13"):  # --bands, when given, must be the model's own count (as in detect)
        res = _cli("enhance", src, "-m", synthetic[1], "--out", tmp_path / "y.npy", "--bands", other)
        assert isinstance(res.exception, FencliError) and "differs from the 12 bands" in str(res.exception)


NO_TORCH = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import numpy as np
from fencli.runtime import get_session
import fencli, fencli.models, fencli.preprocess, fencli.detectors
cube = np.random.default_rng(0).random((9, 11, int(sys.argv[3]))).astype(np.float32)
y = get_session(sys.argv[1], device="auto").enhance(cube)
np.save(sys.argv[2], y)
import fencli.io  # noqa
from fencli.cli import app
import fencli.cli.enhance, fencli.cli.models  # noqa
np.save(sys.argv[2] + ".in.npy", cube)
app(["enhance", sys.argv[2] + ".in.npy", "--model", sys.argv[1], "--out", sys.argv[2] + ".cli.npy"],
    standalone_mode=False)
"""


def test_runtime_without_torch(shipped, tmp_path):
    out = tmp_path / "y.npy"
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(shipped), str(out), "50"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    cube = np.random.default_rng(0).random((9, 11, 50)).astype(np.float32)
    expected = get_session(shipped, device="cpu").enhance(cube)
    np.testing.assert_allclose(np.load(out), expected, rtol=0, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_array_equal(np.load(str(out) + ".cli.npy"), np.load(out))  # the CLI, torch-free too


def test_cli_detect_reports_the_provider(shipped, tmp_path):
    import fencli.cli.detect  # noqa: F401  (registers the command)

    _, src = _small_scene(tmp_path, bands=52)
    res = _cli("detect", src, "--model", shipped, "--device", "cpu", "--threads", "1", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["provider"] == "CPUExecutionProvider"
    res = _cli("detect", src, "--model", "none", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["provider"] is None  # no model, no FEN provider
