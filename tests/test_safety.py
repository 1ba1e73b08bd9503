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
    from fencli.cli import export as export_cli

    def no_torch(module):
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr(export_cli, "stage", no_torch)  # what importing the export stage meets without torch
    msg = _cli_error("export", "--checkpoint", tmp_path)
    assert msg == ("fencli export needs the export extra (torch, onnx): pip install 'fencli[export]' "
                   "(No module named 'torch')")


# --- item 3: outputs never clobber inputs, and a failed run writes nothing ----------------------
def _detect(*args):
    return _cli("detect", *args, "--model", "none")


def _same_as_input(flag: str, given, role: str, src) -> str:
    return f"{flag} {given} is the same file as the {role} {src}: an output never overwrites an input, --force or not"


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
def test_out_never_overwrites_the_scene_whatever_path_spells_it(scene, spelling):
    before = scene.read_bytes()
    given = {"same": lambda: scene, "dotted": lambda: scene.parent / "." / ".." / scene.parent.name / scene.name,
             "symlink": lambda: (scene.parent / "link.npy").symlink_to(scene) or scene.parent / "link.npy",
             "hardlink": lambda: os.link(scene, scene.parent / "hard.npy") or scene.parent / "hard.npy"}[spelling]()
    for force in ([], ["--force"]):
        res = _detect(scene, "--out", given, *force)
        assert str(res.exception) == _same_as_input("--out", given, "scene", scene)
    assert scene.read_bytes() == before


def test_no_output_overwrites_the_ground_truth(scene, tmp_path):
    gt = tmp_path / "gt.npy"
    truth = np.zeros((20, 24), np.uint8)
    truth[3:5, 4:6] = 1
    np.save(gt, truth)
    for flag in ("--out", "--mask"):
        res = _detect(scene, "--gt", gt, flag, gt, "--force")
        assert str(res.exception) == _same_as_input(flag, gt, "ground truth", gt)
    np.testing.assert_array_equal(np.load(gt), truth)


def test_envi_outputs_never_overwrite_the_scene_header_or_data(tmp_path):
    from fencli.output import write_envi_scene

    hdr, img = write_envi_scene(tmp_path / "scene.hdr", _cube())
    before = img.read_bytes()
    assert str(_detect(hdr, "--out", img, "--force").exception) == _same_as_input(
        "--out", f"{img} writes {hdr}, which", "scene", hdr)
    assert str(_detect(img, "--out", hdr, "--force").exception) == _same_as_input(
        "--out", hdr, "scene's ENVI header", hdr)
    assert str(_detect(hdr, "--out", tmp_path / "x.hdr", "--mask", img, "--force").exception) == _same_as_input(
        "--mask", f"{img} writes {hdr}, which", "scene", hdr)
    other = tmp_path / "other.hdr"  # writes other.hdr + other.img: neither is an input
    assert _detect(hdr, "--out", other).exit_code == 0 and other.with_suffix(".img").exists()
    assert img.read_bytes() == before


def test_enhance_never_overwrites_its_input_whole_or_tiled(scene):
    before = scene.read_bytes()
    for tiled in ([], ["--tile", "8"]):
        res = _cli("enhance", scene, "--model", "adaptive", "--out", scene, "--force", *tiled)
        assert str(res.exception) == _same_as_input("--out", scene, "scene", scene)
    assert scene.read_bytes() == before


@pytest.mark.parametrize("flag, given, message", [
    ("--mask", "x.txt", "--mask x.txt: a map is written as .tif, .tiff, .hdr, .img, .h5, .hdf5, .npy, .mat, not .txt"),
    ("--objects", "x.tif", "--objects x.tif: an object table is written as .csv, .geojson, .json, not .tif"),
    ("--png", "x.txt", "--png x.txt: a PNG image is written as .png, not .txt"),
    ("--quicklook", "x.txt", "--quicklook x.txt: a PNG image is written as .png, not .txt"),
    ("--mask", "/nonexistent/m.npy", "cannot write --mask /nonexistent/m.npy: folder /nonexistent does not exist"),
    ("--objects", "/proc/o.csv", "cannot write --objects /proc/o.csv: folder /proc is not writable"),
])
def test_a_bad_output_is_refused_before_any_work_and_nothing_is_written(scene, tmp_path, monkeypatch, flag,
                                                                        given, message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "scores.npy"
    res = _detect(scene, "--out", out, flag, given)
    assert str(res.exception).startswith(message), res.exception
    assert not out.exists() and not (tmp_path / given).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.npy"]


def test_two_outputs_naming_one_file_are_refused(scene, tmp_path):
    out = tmp_path / "o.npy"
    assert str(_detect(scene, "--out", out, "--mask", out).exception) == (
        f"--out and --mask both name {out}: give each output its own file")
    ql = tmp_path / "q.png"
    assert str(_detect(scene, "--png", ql, "--quicklook", tmp_path / "." / "q.png").exception) == (
        f"--png and --quicklook both name {tmp_path / '.' / 'q.png'}: give each output its own file")
    hdr = tmp_path / "m.hdr"  # ENVI writes m.hdr and m.img
    assert "both name" in str(_detect(scene, "--out", hdr, "--mask", tmp_path / "m.img").exception)
    assert not out.exists() and not ql.exists() and not hdr.exists()


def test_an_existing_output_is_refused_before_work_without_force(scene, tmp_path):
    out = tmp_path / "o.npy"
    out.write_bytes(b"old")
    assert str(_detect(scene, "--out", out).exception) == f"{out} exists: pass --force to overwrite it"
    assert out.read_bytes() == b"old"


def test_a_failed_write_leaves_no_output_at_all(scene, tmp_path, monkeypatch):
    import fencli.report

    def broken(*args, **kw):
        raise FencliError("the PNG could not be drawn")

    monkeypatch.setattr(fencli.report, "save_maps_png", broken)
    out, mask, objs = tmp_path / "o.npy", tmp_path / "m.npy", tmp_path / "objs.csv"
    res = _detect(scene, "--out", out, "--mask", mask, "--objects", objs, "--png", tmp_path / "p.png")
    assert str(res.exception) == "the PNG could not be drawn"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.npy"]  # no map, no temp files


def test_a_failed_forced_run_keeps_the_old_outputs(scene, tmp_path, monkeypatch):
    import fencli.report

    out, png = tmp_path / "o.npy", tmp_path / "p.png"
    out.write_bytes(b"old map")
    png.write_bytes(b"old png")
    monkeypatch.setattr(fencli.report, "save_maps_png", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    res = _detect(scene, "--out", out, "--png", png, "--force")
    assert isinstance(res.exception, KeyboardInterrupt) or res.exit_code != 0
    assert out.read_bytes() == b"old map" and png.read_bytes() == b"old png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.npy", "p.png", "scene.npy"]


def test_all_outputs_appear_together(scene, tmp_path):
    out, mask, png = tmp_path / "o.npy", tmp_path / "m.npy", tmp_path / "p.png"
    res = _detect(scene, "--out", out, "--mask", mask, "--png", png)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy", "o.npy", "p.png", "scene.npy"]
    assert np.load(out).shape == np.load(mask).shape == (20, 24)


def test_publishing_rolls_back_when_one_rename_fails(tmp_path, monkeypatch):
    import fencli.output as output
    from fencli.output import OutputPlan, write_array

    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    a.write_bytes(b"old a")
    plan = OutputPlan.checked(force=True, inputs={}, outputs={"--a": (a, "raster"), "--b": (b, "raster")})
    real = output._publish

    def fail_on_b(tmp, path, force):
        if path == b:
            raise OSError(28, "No space left on device")
        real(tmp, path, force)

    monkeypatch.setattr(output, "_publish", fail_on_b)
    with pytest.raises(FencliError) as err:
        with plan.publishing():
            write_array(a, np.ones(3), force=True)
            write_array(b, np.ones(3), force=True)
    assert str(err.value) == f"cannot write {b}: No space left on device; no output was written"
    assert a.read_bytes() == b"old a" and sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


def test_batch_outputs_never_overwrite_an_input_scene(tmp_path):
    from fencli.batch import run_batch

    d = tmp_path / "scenes"
    d.mkdir()
    np.save(d / "a.npy", _cube(1))
    np.save(d / "a.grx.npy", _cube(2))  # a scene whose name is the map of a.npy in the same folder
    before = (d / "a.grx.npy").read_bytes()
    with pytest.raises(FencliError) as err:
        run_batch([d], d, method="grx", force=True, progress=False)
    assert str(err.value) == _same_as_input("--out-dir", d / "a.grx.npy", "scene", d / "a.grx.npy")
    assert (d / "a.grx.npy").read_bytes() == before and not (d / "summary.json").exists()


# --- item 1 (input side): nodata read, --nodata, the mask, the overflow guard -------------------
def test_envi_data_ignore_value_is_read(tmp_path):
    from fencli.output import write_envi_scene

    hdr, _ = write_envi_scene(tmp_path / "s.hdr", _cube())
    hdr.write_text(hdr.read_text() + "data ignore value = -9999\n")
    got = read_scene(hdr)
    assert got.nodata == [-9999.0] and got.meta["nodata"] == [-9999.0]
    hdr.write_text(hdr.read_text().replace("-9999", "none"))
    with pytest.raises(FencliError, match=r"data ignore value = 'none' is not a number"):
        read_scene(hdr)


def test_geotiff_nodata_is_read_as_nan(tmp_path):
    pytest.importorskip("rasterio")
    from fencli.output import write_geotiff

    cube = _cube()
    cube[0, 0] = -9999
    write_geotiff(tmp_path / "s.tif", cube, None, nodata=-9999)
    got = read_scene(tmp_path / "s.tif", validate=False)
    assert np.isnan(got.nodata).all() and len(got.nodata) == 1 and got.meta["nodata_declared"] == -9999
    assert np.isnan(np.asarray(got.cube)[0, 0]).all()
    assert read_scene(tmp_path / "s.tif", nodata=[]).meta["validation"]["nodata_pixels"] == 1


@pytest.mark.parametrize("attr", ["_FillValue", "nodata", "missing_value"])
def test_hdf5_nodata_attributes_are_read(tmp_path, attr):
    import h5py

    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("cube", data=_cube()).attrs[attr] = np.float32(-9999)
    assert read_scene(tmp_path / "s.h5").nodata == [-9999.0]


def test_mat_and_npy_declare_no_nodata_and_nodata_values_merge(tmp_path, scene):
    import scipy.io

    scipy.io.savemat(tmp_path / "s.mat", {"data": _cube()})
    assert read_scene(tmp_path / "s.mat").nodata == [] and read_scene(scene).nodata == []
    got = read_scene(scene, nodata=["-9999", "nan", "-9999.0"])
    assert got.nodata[0] == -9999 and np.isnan(got.nodata[1]) and len(got.nodata) == 2
    with pytest.raises(FencliError) as err:
        read_scene(scene, nodata=["none"])
    assert str(err.value) == "--nodata takes a number, nan or auto, not 'none'"


def test_nodata_mask_any_band_equal_or_nonfinite_chunked_on_a_memmap(tmp_path):
    from fencli.io import nodata_mask

    cube = _cube(shape=(30, 20, 5))
    cube[2, 3, 1] = -9999
    cube[7, 0, :] = -9999
    cube[9, 9, 4] = np.nan
    cube[11, 1, 0] = np.inf
    np.save(tmp_path / "c.npy", cube)
    mm = np.load(tmp_path / "c.npy", mmap_mode="r")
    expect = np.zeros((30, 20), bool)
    expect[2, 3] = expect[7, 0] = True
    for chunk_bytes in (64 << 20, 100):  # whole, and one row at a time
        np.testing.assert_array_equal(nodata_mask(mm, [-9999], chunk_bytes=chunk_bytes), expect)
        both = expect.copy()
        both[9, 9] = both[11, 1] = True
        np.testing.assert_array_equal(nodata_mask(mm, [-9999, float("nan")], chunk_bytes=chunk_bytes), both)
    assert not nodata_mask(mm, []).any()
    ints = np.full((6, 6, 3), 7, np.uint16)
    ints[0, 0, 0] = 65535
    assert nodata_mask(ints, [-9999, 65535.0]).sum() == 1  # -9999 cannot be a uint16: never matches
    f32 = np.full((6, 6, 2), 0.1, np.float32)
    assert nodata_mask(f32, [0.1]).all()  # compared in the cube's dtype


def test_nodata_auto_finds_fill_values_held_in_every_band_only(tmp_path):
    from fencli.io import auto_nodata

    cube = _cube()
    assert auto_nodata(cube) == []
    cube[0, :5] = -9999  # a border of fill
    cube[3, 3, 2] = -32768  # one band only: a value, not a fill
    assert auto_nodata(cube) == [-9999.0]
    cube[4, 4] = np.finfo(np.float32).max
    assert auto_nodata(cube) == [-9999.0, float(np.finfo(np.float32).max)]
    assert auto_nodata(np.full((6, 6, 1), -9999.0)) == []  # one band cannot tell a fill
    np.save(tmp_path / "c.npy", cube)
    assert read_scene(tmp_path / "c.npy", nodata=["auto"], validate=False).nodata == auto_nodata(cube)


def _flt_max_scene(path: Path, dtype=np.float32, value=None) -> Path:
    cube = _cube(3, (40, 50, 6)).astype(dtype)
    cube[np.arange(6), np.arange(6) * 7] = np.finfo(np.float32).max if value is None else value
    np.save(path, cube)
    return path


def test_flt_max_is_one_line_naming_nodata_never_a_silent_auc(tmp_path):
    path = _flt_max_scene(tmp_path / "s.npy")
    gt = tmp_path / "gt.npy"
    np.save(gt, (np.arange(40 * 50).reshape(40, 50) % 97 == 0).astype(np.uint8))
    res = _cli("detect", path, "--model", "none", "--gt", gt)
    assert res.exit_code != 0 and str(res.exception) == (
        "s.npy holds 3.40282347e+38 (FLT_MAX), beyond what float64 statistics take (|x| > 1e30): if it "
        "marks missing pixels pass --nodata 3.4028234663852886e+38, else rescale the data")


@pytest.mark.parametrize("value, shown", [(1e300, "1e+300"), (-np.finfo(np.float64).max, "-1.79769313e+308 (-DBL_MAX)"),
                                          (5e30, "5e+30")])
def test_values_beyond_1e30_are_refused_in_float64(tmp_path, value, shown):
    from fencli.io import validate_cube

    path = _flt_max_scene(tmp_path / "s.npy", np.float64, value)
    with pytest.raises(FencliError) as err:
        validate_cube(np.load(path), name="s.npy")
    assert str(err.value).startswith(f"s.npy holds {shown}, beyond what float64 statistics take (|x| > 1e30)")
    assert f"--nodata {float(value)!r}" in str(err.value)


def test_nodata_pixels_leave_the_checks_and_the_range(tmp_path):
    from fencli.io import nodata_mask, validate_cube

    path = _flt_max_scene(tmp_path / "s.npy")
    cube = np.load(path)
    _, report = validate_cube(cube, nodata=[float(np.finfo(np.float32).max)])
    valid = cube[~nodata_mask(cube, [float(np.finfo(np.float32).max)])]
    assert report["nodata_pixels"] == 6 and report["max"] == float(valid.max())
    assert report["band_min"] == valid.min(axis=0).tolist()
    with pytest.raises(FencliError, match=r"every pixel is nodata \(-9999\): nothing to detect"):
        validate_cube(np.full((6, 6, 2), -9999.0), nodata=[-9999])
    assert read_scene(path, nodata=[str(np.finfo(np.float32).max)]).meta["validation"]["nodata_pixels"] == 6


# --- item 2: the ground truth is checked ------------------------------------------------------
def _truth() -> np.ndarray:
    gt = np.zeros((20, 24), np.uint8)
    gt[3:5, 4:6] = 1
    gt[12, 15] = 1
    return gt


@pytest.mark.parametrize("bad, shown", [(np.nan, "NaN/Inf"), (-1, "-1"), (255, "255")])
def test_ground_truth_values_other_than_0_1_are_one_line(scene, tmp_path, bad, shown):
    gt = _truth().astype(np.float64 if bad is np.nan or bad < 0 else np.uint8)
    gt[0, 0] = bad
    np.save(tmp_path / "gt.npy", gt)
    with pytest.raises(FencliError) as err:
        read_scene(scene, gt=tmp_path / "gt.npy")
    assert str(err.value) == (f"ground truth 'array' in gt.npy holds values other than 0 and 1 ({shown}): save it "
                              "as a 0/1 map, or declare its nodata value (HDF5 _FillValue or nodata attribute, "
                              "ENVI data ignore value, GeoTIFF nodata) to leave those pixels out")
    res = _cli("detect", scene, "--model", "none", "--gt", tmp_path / "gt.npy")
    assert res.exit_code != 0 and str(res.exception) == str(err.value)


def test_a_binary_0_255_map_is_still_a_ground_truth(scene, tmp_path):
    np.save(tmp_path / "gt.npy", _truth() * 255)
    got = read_scene(scene, gt=tmp_path / "gt.npy")
    np.testing.assert_array_equal(got.gt, _truth() == 1)
    assert got.gt_valid is None and got.meta["gt_nodata_pixels"] == 0


@pytest.mark.parametrize("attr, fill", [("_FillValue", 255), ("nodata", -1), ("_FillValue", np.nan)])
def test_declared_ground_truth_nodata_is_left_out(tmp_path, attr, fill):
    import h5py

    gt = _truth().astype(np.float32)
    gt[0, :] = fill
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["cube"] = _cube()
        f["map"] = gt
        f["map"].attrs[attr] = np.float32(fill)
    got = read_scene(tmp_path / "s.h5")
    want_valid = np.ones((20, 24), bool)
    want_valid[0, :] = False
    np.testing.assert_array_equal(got.gt_valid, want_valid)
    np.testing.assert_array_equal(got.gt, _truth() == 1)
    assert got.meta["gt_nodata_pixels"] == 24


def test_envi_ground_truth_data_ignore_value(scene, tmp_path):
    from fencli.io import read_truth
    from fencli.output import write_envi_scene

    gt = _truth().astype(np.int16)
    gt[5, 5] = -9999
    hdr, _ = write_envi_scene(tmp_path / "g.hdr", gt[:, :, None])
    with pytest.raises(FencliError, match=r"holds values other than 0 and 1 \(-9999\)"):
        read_truth(hdr)
    hdr.write_text(hdr.read_text() + "data ignore value = -9999\n")
    mask, valid = read_truth(hdr)
    assert valid.sum() == valid.size - 1 and not valid[5, 5] and mask.sum() == 5


def test_metrics_ignore_pixels_that_are_not_valid():
    from conftest import pair_auc
    from fencli.metrics import roc3d, roc_auc, roc_curve

    rng = np.random.default_rng(0)
    gt = _truth()
    scores = rng.random(gt.shape) + gt * 0.8
    valid = np.ones(gt.shape, bool)
    valid[0] = valid[:, 0] = False
    scores_wrecked = scores.copy()
    scores_wrecked[~valid] = 1e6  # what a nodata border does to a map
    want = pair_auc(scores[valid], gt[valid])
    assert roc_auc(scores_wrecked, gt, valid) == pytest.approx(want, abs=1e-12)
    assert roc_auc(scores_wrecked, gt) < want
    assert roc3d(scores, gt, valid) == roc3d(scores[valid], gt[valid])
    pf, pd, _ = roc_curve(scores_wrecked, gt, valid)
    assert pd[-1] == 1 and pf[-1] == 1
    with pytest.raises(FencliError, match="valid mask shape"):
        roc_auc(scores, gt, valid[:3])


# --- item 6: batch summaries keep history ----------------------------------------------------
def test_a_second_batch_with_another_method_keeps_the_first_rows(tmp_path):
    from fencli.batch import run_batch

    d = tmp_path / "scenes"
    d.mkdir()
    for i in range(2):
        np.save(d / f"s{i}.npy", _cube(i))
    out = tmp_path / "out"
    run_batch([d], out, method="grx", progress=False)
    run_batch([d], out, method="slrx", progress=False, options={"block_size": 2})
    data = json.loads((out / "summary.json").read_text())
    assert set(data) == {"out_dir", "counts", "scenes"} and data["out_dir"] == str(out)
    assert [(r["scene"], r["method"]) for r in data["scenes"]] == [("s0", "grx"), ("s1", "grx"),
                                                                   ("s0", "slrx"), ("s1", "slrx")]
    assert data["counts"] == {"ok": 4, "skipped": 0, "error": 0}
    import csv

    with open(out / "summary.csv") as f:
        assert [(r["scene"], r["method"]) for r in csv.DictReader(f)] == [(r["scene"], r["method"])
                                                                          for r in data["scenes"]]
    run_batch([d / "s1.npy"], out, method="grx", progress=False, force=True)  # the same key: replaced in place
    again = json.loads((out / "summary.json").read_text())["scenes"]
    assert [(r["scene"], r["method"]) for r in again] == [(r["scene"], r["method"]) for r in data["scenes"]]


def test_an_old_bare_list_summary_is_read_and_rewritten_in_the_json_shape(tmp_path):
    from fencli.batch import run_batch

    d = tmp_path / "scenes"
    d.mkdir()
    np.save(d / "s0.npy", _cube())
    out = tmp_path / "out"
    out.mkdir()
    old = [{"scene": "older", "path": "x.npy", "status": "ok", "method": "lrx", "model": None, "out": "x"}]
    (out / "summary.json").write_text(json.dumps(old))
    run_batch([d], out, method="grx", progress=False)
    rows = json.loads((out / "summary.json").read_text())["scenes"]
    assert [(r["scene"], r["method"]) for r in rows] == [("older", "lrx"), ("s0", "grx")]


def test_cli_batch_json_has_the_summary_shape_and_the_table_names_method_and_model(tmp_path):
    d = tmp_path / "scenes"
    d.mkdir()
    np.save(d / "s0.npy", _cube())
    res = _cli("detect", d, "--model", "none", "--out-dir", tmp_path / "out", "--json")
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed == json.loads((tmp_path / "out" / "summary.json").read_text())
    from rich.console import Console

    from fencli.batch import Row, Summary, summary_table

    console = Console(width=200, record=True)
    console.print(summary_table(Summary([Row("s0", "s0.npy", "ok", [20, 24, 6], 6, "slrx", "ferd-200", 0.9, 1.0)]),
                                tmp_path))
    text = console.export_text()
    assert "method" in text and "model" in text and "slrx" in text and "ferd-200" in text


def test_block_size_and_block_num_below_one_name_the_flag(scene):
    assert _cli_error("detect", scene, "--model", "none", "--method", "slrx", "--block-size", "0") == (
        "--block-size must be at least 1, got 0")
    assert _cli_error("detect", scene, "--model", "none", "--method", "slrx", "--block-num", "0") == (
        "--block-num must be at least 1, got 0")


def test_a_complex_mat_cube_is_named(tmp_path):
    import scipy.io

    rng = np.random.default_rng(0)
    scipy.io.savemat(tmp_path / "cx.mat", {"data": rng.random((40, 50, 30)) + 1j * rng.random((40, 50, 30)),
                                           "map": np.zeros((40, 50), np.uint8)})
    want = ("cx.mat holds no real 3-D cube: 'data' (40 x 50 x 30 complex128) is complex; save its real part or "
            "magnitude as the cube (found: data (40 x 50 x 30 complex128), map (40 x 50 uint8))")
    with pytest.raises(FencliError) as err:
        read_scene(tmp_path / "cx.mat")
    assert str(err.value) == want
    with pytest.raises(FencliError) as err:
        read_scene(tmp_path / "cx.mat", key="data")
    assert str(err.value) == "'data' in cx.mat is 40 x 50 x 30 complex128, not a 3-D numeric cube"


def test_a_complex_mat73_cube_is_named(tmp_path):
    import h5py

    path = tmp_path / "cx.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        ds = f.create_dataset("data", data=np.zeros((30, 50, 40), [("real", "<f8"), ("imag", "<f8")]))
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        f.create_dataset("map", data=np.zeros((50, 40), "u1")).attrs["MATLAB_class"] = np.bytes_("uint8")
    with open(path, "r+b") as out:
        out.write(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM")
    with pytest.raises(FencliError, match=r"^cx.mat holds no real 3-D cube: 'data' \(40 x 50 x 30 complex128\) "
                                          r"is complex"):
        read_scene(path)


NO_GRID = "fencli: input has no georeferencing: outputs are on the pixel grid (x = column, y = row)"


@pytest.mark.parametrize("args, noted", [(["--out", "o.npy"], False), (["--out", "o.mat"], False),
                                         (["--out", "o.tif"], True), (["--out", "o.hdr"], True),
                                         (["--objects", "o.csv"], True), (["--mask", "m.h5"], True),
                                         (["--quicklook", "q.png"], False)])
def test_the_no_georeferencing_note_only_when_map_coordinates_are_asked_for(scene, tmp_path, monkeypatch,
                                                                            args, noted):
    if args[1].endswith(".tif"):
        pytest.importorskip("rasterio")
    monkeypatch.chdir(tmp_path)
    res = _cli("detect", scene, "--model", "none", *args)
    assert res.exit_code == 0, res.output
    assert (NO_GRID in res.stderr) == noted


def test_a_fifo_header_blocks_neither_the_output_checks_nor_the_reader(tmp_path):
    fifo = tmp_path / "scene.hdr"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    res = _cli("detect", fifo, "--model", "none", "--out", tmp_path / "o.npy")
    assert str(res.exception).startswith(f"{fifo} is a FIFO (named pipe), not a regular file")
    assert time.perf_counter() - t0 < 10 and not (tmp_path / "o.npy").exists()


def test_geotiff_ground_truth_nodata_is_left_out(scene, tmp_path):
    pytest.importorskip("rasterio")
    from fencli.output import write_geotiff

    gt = _truth().astype(np.float32)
    gt[0, 0] = gt[19, 23] = -1
    write_geotiff(tmp_path / "gt.tif", gt, None, nodata=-1)
    got = read_scene(scene, gt=tmp_path / "gt.tif")
    assert got.meta["gt_nodata_pixels"] == 2 and not got.gt_valid[0, 0] and got.gt.sum() == 5
    write_geotiff(tmp_path / "plain.tif", gt, None)  # no nodata declared: -1 is an error
    with pytest.raises(FencliError, match=r"ground truth plain.tif holds values other than 0 and 1 \(-1\)"):
        read_scene(scene, gt=tmp_path / "plain.tif")


def test_valid_pixels_combine_the_cube_and_ground_truth_nodata(tmp_path):
    import h5py

    from fencli.io import valid_pixels

    cube = _cube()
    cube[2, 3] = -9999
    gt = _truth().astype(np.float32)
    gt[0, 0] = 255
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["cube"] = cube
        f["cube"].attrs["_FillValue"] = -9999.0
        f["map"] = gt
        f["map"].attrs["nodata"] = 255
    got = read_scene(tmp_path / "s.h5")
    valid = valid_pixels(got)
    assert valid.sum() == valid.size - 2 and not valid[2, 3] and not valid[0, 0]
    np.save(tmp_path / "clean.npy", _cube())
    assert valid_pixels(read_scene(tmp_path / "clean.npy")) is None


def test_nan_fill_means_leave_nodata_pixels_out():
    from fencli.io import validate_cube

    cube = np.ones((6, 6, 2), np.float32)
    cube[:, :, 1] = 2
    cube[5, 5, 0] = 3  # band 0: thirty-four 1s and one 3 outside nodata
    cube[0, 0] = -9999
    cube[1, 1, 0] = np.nan
    filled, report = validate_cube(cube, nan="fill", constant_bands="keep", nodata=[-9999])
    assert filled[1, 1, 0] == np.float32(36 / 34) and report["filled"] and report["nodata_pixels"] == 1


def test_enhance_checks_its_output_before_the_forward_pass(scene, tmp_path):
    assert _cli_error("enhance", scene, "--model", "adaptive", "--out", tmp_path / "x.txt") == (
        "--out x.txt: a cube is written as .npy, .mat, .h5, .hdf5, .hdr, .img, not .txt")
    (tmp_path / "dir.npy").mkdir()
    assert _cli_error("enhance", scene, "--model", "adaptive", "--out", tmp_path / "dir.npy") == (
        f"--out {tmp_path / 'dir.npy'} is a folder; give a file name")
    out = tmp_path / "e.npy"
    assert _cli("enhance", scene, "--model", "adaptive", "--out", out).exit_code == 0
    assert np.load(out).shape == (20, 24, 6) and not list(tmp_path.glob(".*tmp*"))


def test_an_envi_ground_truth_data_file_is_an_input_too(scene, tmp_path):
    from fencli.output import write_envi_scene

    hdr, img = write_envi_scene(tmp_path / "g.hdr", _truth()[:, :, None])
    res = _detect(scene, "--gt", hdr, "--mask", img, "--force")
    assert str(res.exception) == _same_as_input("--mask", f"{img} writes {hdr}, which", "ground truth", hdr)
    res = _detect(scene, "--gt", img, "--out", hdr, "--force")
    assert str(res.exception) == _same_as_input("--out", hdr, "ground truth's ENVI header", hdr)


def test_a_sparsely_written_hdf5_ground_truth_is_read(tmp_path):
    """Unwritten chunks of a mask read as 0 = background: only a cube that stores nothing is refused."""
    import h5py

    from fencli.io import read_scene

    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["data"] = np.random.default_rng(0).random((40, 40, 6)).astype(np.float32)
        gt = f.create_dataset("map", shape=(40, 40), dtype="u1", chunks=(5, 5), compression="gzip")
        gt[5, 5] = 1
    scene = read_scene(tmp_path / "s.h5")
    assert scene.gt.sum() == 1 and scene.gt[5, 5]
