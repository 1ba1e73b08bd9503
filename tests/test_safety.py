"""Issue 23: nothing wrong in silence, nothing lost. Bad inputs get one line at once; outputs never
clobber inputs and a failed run writes nothing; nodata and ground-truth values are checked."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from fencli.errors import FencliError
from fencli.io import read_scene

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args):
    from typer.testing import CliRunner

    from fencli.cli import _register, app

    _register()
    return CliRunner().invoke(app, [*map(str, args)])


def _cli_error(*args) -> str:
    res = _cli(*args)
    assert isinstance(res.exception, FencliError), res.output
    return str(res.exception)


def _cube(seed: int = 0, shape=(20, 24, 6)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) + np.linspace(0, 2, shape[-1])).astype(np.float32)


@pytest.fixture
def scene(tmp_path) -> Path:
    path = tmp_path / "scene.npy"
    np.save(path, _cube())
    return path


# --- item 4: no endless runs ------------------------------------------------------------------
def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "scene.npy"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    with pytest.raises(FencliError) as err:
        read_scene(fifo)
    assert str(err.value) == (f"{fifo} is a FIFO (named pipe), not a regular file: "
                              "fencli reads scenes and ground truth from files only")
    assert time.perf_counter() - t0 < 5


def test_a_device_is_refused_as_scene_and_as_ground_truth(scene):
    with pytest.raises(FencliError, match=r"^/dev/null is a character device, not a regular file"):
        read_scene("/dev/null")
    with pytest.raises(FencliError, match=r"^/dev/zero is a character device"):
        read_scene(scene, gt="/dev/zero")


def test_a_symlink_loop_and_a_broken_link_are_named(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(FencliError) as err:
        read_scene(a)
    assert str(err.value) == f"{a}: symbolic link loop (the link never reaches a file)"
    broken = tmp_path / "c.npy"
    broken.symlink_to(tmp_path / "gone.npy")
    with pytest.raises(FencliError) as err:
        read_scene(broken)
    assert str(err.value) == f"{broken}: broken symbolic link (to {tmp_path / 'gone.npy'}, which does not exist)"
    assert _cli_error("detect", a, "--model", "none") == f"{a}: symbolic link loop (the link never reaches a file)"


def test_hdf5_declaring_unwritten_chunks_is_refused_at_once(tmp_path):
    import h5py

    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("cube", shape=(100000, 100000, 200), chunks=(64, 64, 50), dtype="f4")
    assert path.stat().st_size < 100_000
    t0 = time.perf_counter()
    with pytest.raises(FencliError) as err:
        read_scene(path)
    assert time.perf_counter() - t0 < 5
    assert str(err.value) == ("huge.h5: dataset '/cube' declares 100000 x 100000 x 200 float32 (8.0 TB) but "
                              "stores no data (none of its 9771876 chunks was ever written): refusing to scan it")


def test_hdf5_contiguous_never_written_and_mostly_unwritten_are_refused_partly_written_is_read(tmp_path):
    import h5py

    with h5py.File(tmp_path / "cont.h5", "w") as f:
        f.create_dataset("cube", shape=(20, 20, 8), dtype="f4")
    with pytest.raises(FencliError, match=r"declares 20 x 20 x 8 float32 \(12.8 KB\) but stores no data "
                                          r"\(never written\)"):
        read_scene(tmp_path / "cont.h5")
    with h5py.File(tmp_path / "sparse.h5", "w") as f:
        d = f.create_dataset("cube", shape=(1000, 1000, 4), chunks=(10, 10, 4), dtype="f4")
        d[:10, :10] = 1
    with pytest.raises(FencliError, match="stores only 1 of its 10000 chunks"):
        read_scene(tmp_path / "sparse.h5")
    cube = _cube()
    with h5py.File(tmp_path / "half.h5", "w") as f:
        d = f.create_dataset("cube", shape=cube.shape, chunks=(10, 12, 6), dtype="f4", fillvalue=-9999)
        d[:10] = cube[:10]
    got = read_scene(tmp_path / "half.h5", validate=False)
    np.testing.assert_array_equal(np.asarray(got.cube)[:10], cube[:10])


# --- item 5: the small ones -------------------------------------------------------------------
@pytest.mark.parametrize("bands", ["0", "-3"])
def test_bands_below_one_is_one_error_without_the_adaptive_note(scene, bands):
    res = _cli("detect", scene, "--bands", bands)
    assert str(res.exception) == f"--bands must be at least 1, got {bands}"
    assert "adaptive" not in res.output and "ran raw" not in res.output
    assert _cli_error("enhance", scene, "--bands", bands) == f"--bands must be at least 1, got {bands}"


def test_unknown_model_lists_adaptive_and_none(scene):
    from fencli.models import registry

    msg = _cli_error("detect", scene, "--model", "bogus")
    assert msg == (f"unknown model 'bogus' (known: adaptive, none, {', '.join(registry())}; "
                   "or give a .onnx path)")


def test_a_pickle_bomb_checkpoint_is_one_line_and_never_runs(tmp_path):
    torch = pytest.importorskip("torch")
    from export.checkpoint import load_checkpoint

    marker = tmp_path / "PWNED"

    class Bomb:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in ("convh.pt", "enc.pt", "pc.pt"):
        torch.save({"state_dict": {"w": Bomb()}}, folder / name)
    with pytest.raises(FencliError) as err:
        load_checkpoint(folder)
    assert str(err.value) == (f"cannot load {folder / 'convh.pt'}: it holds Python objects ({os.name}.system), "
                              "not only tensors; fencli loads weights only and never runs code from a checkpoint")
    assert "\n" not in str(err.value) and not marker.exists()


def test_export_extra_hint_names_the_pip_command(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def no_torch(name, *args, **kw):
        if name.startswith("export.onnx_export"):
            raise ImportError("No module named 'torch'")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    msg = _cli_error("export", "--checkpoint", tmp_path)
    assert msg == ("fencli export needs the export extra (torch, onnx): pip install 'fencli[export]' "
                   "(No module named 'torch')")
