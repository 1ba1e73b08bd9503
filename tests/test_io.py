"""Scene I/O: every format written synthetically, read back exactly; every bad input one clear error."""

from __future__ import annotations

import itertools
import os

import h5py
import numpy as np
import pytest
import scipy.io

from fencli import output
from fencli.errors import FencliError
from fencli.formats import envi, mat
from fencli.formats.hdf5 import LazyCube
from fencli.io import read_mask, read_scene, validate_cube
from fencli.output import atomic_path, write_array, write_envi_scene
from conftest import planted_scene


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    return planted_scene(h=40, w=48, bands=30)  # not square: transposition mistakes show


def _matlab73(path, arrays: dict[str, np.ndarray], compress: bool = False) -> None:
    """Write the way MATLAB's ``save -v7.3`` does: HDF5 behind a 512-byte header, axes reversed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, arr in arrays.items():
            opts = {"chunks": True, "compression": "gzip"} if compress else {}
            ds = f.create_dataset(name, data=arr.T, **opts)
            ds.attrs["MATLAB_class"] = np.bytes_(mat.CLASSES[arr.dtype.str[1:]])
    with open(path, "r+b") as out:
        out.write(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM")


# ----------------------------------------------------------------------------- round trips


def test_npy_is_memmapped_and_exact(tmp_path, scene):
    cube, _ = scene
    write_array(tmp_path / "s.npy", cube)
    s = read_scene(tmp_path / "s.npy")
    assert isinstance(s.cube, np.memmap) and s.meta["lazy"]
    assert s.cube.shape == (40, 48, 30) and s.cube.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(s.cube), cube)
    assert s.gt is None and s.name == "s" and s.meta["format"] == "npy"
    assert s.meta["validation"]["min"] == float(cube.min())


@pytest.mark.parametrize("saver", [np.savez, np.savez_compressed])
def test_npz_finds_cube_and_ground_truth(tmp_path, scene, saver):
    cube, gt = scene
    saver(tmp_path / "s.npz", small=cube[:, :, :3], cube=cube, GroundTruth=gt, bands=np.arange(30))
    s = read_scene(tmp_path / "s.npz")
    assert s.meta["key"] == "cube" and s.meta["gt_key"] == "GroundTruth"
    np.testing.assert_array_equal(s.cube, cube)
    np.testing.assert_array_equal(s.gt, gt.astype(bool))
    assert s.gt.dtype == bool and s.gt.sum() == gt.sum()
    s = read_scene(tmp_path / "s.npz", key="small", constant_bands="keep")
    np.testing.assert_array_equal(s.cube, cube[:, :, :3])


def test_mat_v5_roundtrip_with_map_and_wavelengths(tmp_path, scene):
    cube, gt = scene
    wl = np.linspace(400, 2500, 30)
    scipy.io.savemat(tmp_path / "s.mat", {"data": (cube * 1000).astype(np.uint16) + 7, "map": gt,
                                          "wavelength": wl})
    s = read_scene(tmp_path / "s.mat")
    assert s.meta["format"] == "mat-v5" and s.cube.dtype == np.uint16
    np.testing.assert_array_equal(s.cube, (cube * 1000).astype(np.uint16) + 7)
    np.testing.assert_array_equal(s.gt, gt != 0)
    assert s.meta["wavelengths"] == pytest.approx(wl.tolist())


@pytest.mark.parametrize("compress", [False, True])
def test_mat_v73_axes_are_reversed(tmp_path, scene, compress):
    cube, gt = scene
    _matlab73(tmp_path / "s.mat", {"data": cube, "map": gt}, compress)
    with h5py.File(tmp_path / "s.mat") as f:
        assert f["data"].shape == (30, 48, 40)  # what MATLAB leaves on disk
    s = read_scene(tmp_path / "s.mat")
    assert s.meta["format"] == "mat-v7.3" and s.cube.shape == (40, 48, 30)
    np.testing.assert_array_equal(np.asarray(s.cube), cube)
    np.testing.assert_array_equal(s.gt, gt != 0)
    assert isinstance(s.cube, LazyCube if compress else np.memmap)
    np.testing.assert_array_equal(s.cube[3:9, 5:40:3, 2], cube[3:9, 5:40:3, 2])


def test_mat_v73_logical_map_and_gt_key(tmp_path, scene):
    cube, gt = scene
    with h5py.File(tmp_path / "s.mat", "w", userblock_size=512) as f:
        f["hsi"] = cube.transpose(2, 1, 0)
        f["hsi"].attrs["MATLAB_class"] = np.bytes_("single")
        f["anom"] = gt.T.astype(np.uint8)
        f["anom"].attrs["MATLAB_class"] = np.bytes_("logical")
        f["name"] = np.frombuffer(b"a\0b\0", np.uint16)[:, None]
        f["name"].attrs["MATLAB_class"] = np.bytes_("char")
    s = read_scene(tmp_path / "s.mat", gt_key="anom")
    np.testing.assert_array_equal(s.cube, cube)
    np.testing.assert_array_equal(s.gt, gt != 0)
    assert s.meta["gt_key"] == "anom"
    assert read_scene(tmp_path / "s.mat").gt is None  # 'anom' is no conventional name
    _raises("no array 'name'", read_scene, tmp_path / "s.mat", key="name")  # char data is skipped


def test_mat_writer_falls_back_to_v73(tmp_path, scene, monkeypatch):
    cube, _ = scene
    monkeypatch.setattr(output, "_MAT_V5_LIMIT", cube.nbytes - 1)
    write_array(tmp_path / "big.mat", cube, key="cube")
    assert h5py.is_hdf5(tmp_path / "big.mat")
    assert scipy.io.matlab.matfile_version(str(tmp_path / "big.mat")) == (2, 0)
    with h5py.File(tmp_path / "big.mat") as f:
        assert f["cube"].shape == (30, 48, 40) and f["cube"].attrs["MATLAB_class"] == b"single"
    np.testing.assert_array_equal(read_scene(tmp_path / "big.mat").cube, cube)
    write_array(tmp_path / "small.mat", cube[:, :, :29])  # under the limit: plain v5
    assert not h5py.is_hdf5(tmp_path / "small.mat")
    np.testing.assert_array_equal(scipy.io.loadmat(tmp_path / "small.mat")["data"], cube[:, :, :29])


def test_hdf5_contiguous_is_memmapped_with_attrs(tmp_path, scene):
    cube, gt = scene
    meta = {"georef": {"crs": "EPSG:32611", "transform": [1.0, 0.0, 5e5]},
            "wavelengths": list(np.linspace(400, 1000, 30))}
    write_array(tmp_path / "s.h5", (cube * 1000).astype(np.int16), key="grp/radiance", meta=meta)
    with h5py.File(tmp_path / "s.h5", "a") as f:
        f["grp/mask"] = gt
    s = read_scene(tmp_path / "s.h5")
    assert isinstance(s.cube, np.memmap) and s.cube.dtype == np.int16
    np.testing.assert_array_equal(s.cube, (cube * 1000).astype(np.int16))
    np.testing.assert_array_equal(s.gt, gt != 0)
    assert s.meta["key"] == "grp/radiance" and s.meta["georef"]["crs"] == "EPSG:32611"
    assert s.meta["georef"]["transform"] == [1.0, 0.0, 5e5]
    assert s.meta["wavelengths"] == pytest.approx(meta["wavelengths"])
    assert read_scene(tmp_path / "s.h5", key="radiance").meta["key"] == "grp/radiance"


def test_lazycube_slicing_matches_numpy(tmp_path, scene):
    cube, _ = scene
    stored = cube.transpose(2, 0, 1)  # bands first, chunked and compressed
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("x", data=stored, chunks=(5, 8, 8), compression="gzip")
    s = read_scene(tmp_path / "c.h5", layout="bhw")
    assert isinstance(s.cube, LazyCube) and s.cube.shape == cube.shape
    keys = [np.s_[0:10], np.s_[5], np.s_[-1], np.s_[..., 3], np.s_[2:30:4, ::-1, -5:],
            np.s_[:, 7, ::2], np.s_[3, 4, 5], np.s_[10:2], np.s_[..., ::-3], np.s_[[1, 3]]]
    for key in keys:
        np.testing.assert_array_equal(s.cube[key], cube[key], err_msg=str(key))
    np.testing.assert_array_equal(s.cube.transpose(2, 0, 1)[4, 1:3], stored[4, 1:3])
    np.testing.assert_array_equal(s.cube.T, cube.T)
    assert np.asarray(s.cube, dtype=np.float64).dtype == np.float64
    with pytest.raises(IndexError):
        s.cube[40]


@pytest.mark.parametrize("layout", ["".join(p) for p in itertools.permutations("hwb")])
def test_every_layout(tmp_path, scene, layout):
    cube, gt = scene
    stored = cube.transpose(["hwb".index(c) for c in layout])
    stored_gt = gt.T if layout.index("w") < layout.index("h") else gt
    np.savez(tmp_path / "s.npz", data=stored, map=stored_gt)
    s = read_scene(tmp_path / "s.npz", layout=layout.upper() if layout == "bhw" else layout)
    assert s.cube.shape == (40, 48, 30)
    np.testing.assert_array_equal(s.cube, cube)
    np.testing.assert_array_equal(s.gt, gt != 0)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32, np.float64])
def test_cube_dtypes_kept(tmp_path, scene, dtype):
    cube, _ = scene
    data = (cube * 1000 - 500).astype(dtype)
    np.save(tmp_path / "s.npy", data)
    s = read_scene(tmp_path / "s.npy")
    assert s.cube.dtype == dtype
    np.testing.assert_array_equal(s.cube, data)


# ----------------------------------------------------------------------------- ENVI


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
@pytest.mark.parametrize("byte_order", [0, 1])
def test_envi_interleaves_byte_orders_offsets(tmp_path, scene, interleave, byte_order):
    cube, _ = scene
    data = (cube * 1000).astype(np.uint16)
    hdr, img = write_envi_scene(tmp_path / "s.hdr", data, interleave=interleave,
                                byte_order=byte_order, header_offset=128)
    assert img.stat().st_size == 128 + data.nbytes
    for given in (hdr, img):
        s = read_scene(given)
        assert isinstance(s.cube, np.memmap) and s.cube.shape == (40, 48, 30)
        assert s.cube.dtype.byteorder in ((">",) if byte_order else ("<", "="))
        np.testing.assert_array_equal(s.cube, data)
        np.testing.assert_array_equal(s.cube[5:7, 10, :4], data[5:7, 10, :4])
        assert s.meta["interleave"] == interleave and s.meta["format"] == "envi"


def test_envi_handwritten_bil_big_endian(tmp_path, scene):
    """A file not made by our writer: raw BIL bytes after a 64-byte junk header."""
    cube, _ = scene
    data = (cube * 100 - 50).astype(np.int16)
    (tmp_path / "x.img.hdr").write_text(
        "ENVI\n; a comment = not a field\ndescription = {\n  made by hand, x = 1}\n"
        "samples = 48\nlines   = 40\nbands = 30\nheader offset = 64\n"
        "data type = 2\ninterleave = BIL\nbyte order = 1\nmap info = {UTM, 1, 1, 500000.0,\n"
        " 4100000.0, 30, 30, 11, North, WGS-84}\nwavelength = {\n"
        + ",\n".join(str(400 + 10 * i) for i in range(30)) + "}\n")
    with open(tmp_path / "x.img", "wb") as out:
        out.write(b"\x7f" * 64 + data.transpose(0, 2, 1).astype(">i2").tobytes())
    s = read_scene(tmp_path / "x.img")
    np.testing.assert_array_equal(s.cube, data)
    assert s.meta["georef"]["map info"].startswith("UTM, 1, 1, 500000.0, 4100000.0")
    assert s.meta["wavelengths"] == [400.0 + 10 * i for i in range(30)]
    assert s.meta["header"]["description"] == "made by hand, x = 1"
    assert "; a comment" not in s.meta["header"]


@pytest.mark.parametrize("code", sorted(envi.DTYPES))
def test_envi_every_data_type(tmp_path, scene, code):
    cube, _ = scene
    dtype = np.dtype(envi.DTYPES[code])
    data = (cube * 100).astype(dtype)
    write_envi_scene(tmp_path / "s.img", data)
    assert f"data type = {code}\n" in (tmp_path / "s.hdr").read_text()
    s = read_scene(tmp_path / "s.hdr")
    assert s.cube.dtype == dtype
    np.testing.assert_array_equal(s.cube, data)


def test_envi_readable_by_spectral(tmp_path, scene):
    """An independent reader agrees with our writer (guards against symmetric mistakes)."""
    spectral = pytest.importorskip("spectral")
    cube, _ = scene
    for interleave in ("bsq", "bil", "bip"):
        path = tmp_path / f"{interleave}.hdr"
        write_envi_scene(path, cube, interleave=interleave, byte_order=1, header_offset=16)
        img = spectral.envi.open(path, tmp_path / f"{interleave}.img")
        np.testing.assert_array_equal(np.array(img.open_memmap(interleave="bip")), cube)


def test_write_array_envi_float32_with_georef(tmp_path, scene):
    cube, _ = scene
    meta = {"georef": {"map info": "UTM, 1, 1, 500000, 4100000, 30, 30, 11, North, WGS-84",
                       "coordinate system string": 'PROJCS["WGS_1984_UTM_Zone_11N"]'},
            "wavelengths": [450.5 + i for i in range(30)]}
    write_array(tmp_path / "out.img", cube.astype(np.float64), meta=meta)
    text = (tmp_path / "out.hdr").read_text()
    assert "data type = 4" in text and "interleave = bsq" in text
    s = read_scene(tmp_path / "out.hdr")
    assert s.cube.dtype == np.float32 and s.meta["interleave"] == "bsq"
    np.testing.assert_array_equal(s.cube, cube)
    assert s.meta["georef"] == meta["georef"] and s.meta["wavelengths"] == meta["wavelengths"]
    write_array(tmp_path / "score.hdr", cube[:, :, 0])  # a 2-D score map: one band
    np.testing.assert_array_equal(read_scene(tmp_path / "score.hdr", validate=False).cube[:, :, 0],
                                  cube[:, :, 0])


def test_envi_data_file_without_extension(tmp_path, scene):
    cube, _ = scene
    write_envi_scene(tmp_path / "raw.hdr", cube)
    os.rename(tmp_path / "raw.img", tmp_path / "raw")
    np.testing.assert_array_equal(read_scene(tmp_path / "raw").cube, cube)
    np.testing.assert_array_equal(read_scene(tmp_path / "raw.hdr").cube, cube)


# ----------------------------------------------------------------------------- ground truth files


def test_separate_ground_truth_files(tmp_path, scene):
    cube, gt = scene
    np.save(tmp_path / "s.npy", cube)
    want = gt != 0
    np.save(tmp_path / "g.npy", gt * 255)
    scipy.io.savemat(tmp_path / "g.mat", {"truth": gt.astype(float), "other": np.ones((2, 3))})
    np.savez(tmp_path / "g.npz", anything=gt)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["labels/gt"] = gt
        f["labels/other"] = gt * 0
    write_envi_scene(tmp_path / "g.hdr", gt[:, :, None].astype(np.uint8))
    assert read_scene(tmp_path / "s.npy", gt=tmp_path / "g.npy").gt.sum() == want.sum()
    for name, key in [("g.npy", None), ("g.mat", "truth"), ("g.npz", None), ("g.h5", None),
                      ("g.hdr", None)]:
        np.testing.assert_array_equal(read_mask(tmp_path / name, key), want, err_msg=name)
    s = read_scene(tmp_path / "s.npy", gt=tmp_path / "g.mat", gt_key="truth")
    np.testing.assert_array_equal(s.gt, want)


def test_image_ground_truth_modes(tmp_path, scene):
    image = pytest.importorskip("PIL.Image")
    _, gt = scene
    want = gt != 0
    image.fromarray((gt * 255).astype(np.uint8), "L").save(tmp_path / "grey.png")
    image.fromarray(gt.astype(bool)).save(tmp_path / "bits.png")
    image.fromarray(gt.astype(np.uint16) * 4000).save(tmp_path / "deep.tif")
    rgb = np.zeros(gt.shape + (3,), np.uint8)
    rgb[..., 1] = gt * 200  # only green marks the targets
    image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    rgba = np.full(gt.shape + (4,), 255, np.uint8)
    rgba[..., 3] = np.where(gt != 0, 255, 0)  # white everywhere, transparent off-target
    image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    pal = image.fromarray(gt.astype(np.uint8), "L").convert("P")
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    for name in ("grey.png", "bits.png", "deep.tif", "rgb.png", "rgba.png", "pal.png"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), want, err_msg=name)


# ----------------------------------------------------------------------------- validation


def test_nan_error_counts_pixels(tmp_path, scene):
    cube, _ = scene
    bad = cube.copy()
    bad[3, 4, :] = np.nan
    bad[30, 7, 2] = np.inf
    bad[39, 47, 29] = -np.inf
    np.save(tmp_path / "s.npy", bad)
    match = r"3 pixel\(s\) with NaN/Inf values \(32 values\).*--nan fill"
    with pytest.raises(FencliError, match=match):
        read_scene(tmp_path / "s.npy")


def test_nan_fill_uses_band_means_and_leaves_file_alone(tmp_path, scene):
    cube, _ = scene
    bad = cube.astype(np.float64)
    bad[3, 4, :] = np.nan
    bad[30, 7, 2] = np.inf
    np.save(tmp_path / "s.npy", bad)
    s = read_scene(tmp_path / "s.npy", nan="fill")
    means = np.nanmean(np.where(np.isfinite(bad), bad, np.nan), axis=(0, 1))
    assert s.cube[3, 4] == pytest.approx(means, rel=1e-12)
    assert s.cube[30, 7, 2] == pytest.approx(means[2], rel=1e-12)
    assert np.isfinite(s.cube).all() and s.meta["validation"]["filled"]
    report = s.meta["validation"]
    assert report["nonfinite_pixels"] == 2 and "filled 2 pixel" in report["notes"][0]
    mask = np.isfinite(bad)
    np.testing.assert_array_equal(s.cube[mask], bad[mask])
    assert np.isnan(np.load(tmp_path / "s.npy")[3, 4, 0])


def test_validation_chunks_agree(scene):
    cube, _ = scene
    bad = cube.copy()
    bad[38, 1, 5] = np.nan  # in the last chunk only
    bad[:, :, 9] = 2.5
    for chunk_bytes in (1, 48 * 30 * 4 * 3, 64 << 20):
        with pytest.raises(FencliError, match=r"1 pixel\(s\)"):
            validate_cube(bad, chunk_bytes=chunk_bytes)
        out, report = validate_cube(bad, nan="fill", constant_bands="keep", chunk_bytes=chunk_bytes)
        assert report["constant_bands"] == [9] and report["nonfinite_values"] == 1
        assert out[38, 1, 5] == pytest.approx(np.nanmean(bad[:, :, 5]), rel=1e-6)
        assert report["min"] == float(np.nanmin(bad)) and report["max"] == float(np.nanmax(bad))


def test_constant_cube_and_bands(tmp_path, scene):
    cube, _ = scene
    with pytest.raises(FencliError, match="constant .every value is 3"):
        validate_cube(np.full((6, 6, 4), 3, np.uint16))
    flat = cube.copy()
    flat[:, :, [0, 4, 5, 6, 7, 8, 20]] = 1.0
    np.save(tmp_path / "s.npy", flat)
    match = r"7 constant band\(s\) \(0-based: 0, 4, 5, 6, 7 and 2 more\)"
    with pytest.raises(FencliError, match=match):
        read_scene(tmp_path / "s.npy")
    s = read_scene(tmp_path / "s.npy", constant_bands="keep")
    assert s.meta["validation"]["constant_bands"] == [0, 4, 5, 6, 7, 8, 20]


def test_too_small_scene(tmp_path):
    np.save(tmp_path / "s.npy", np.random.default_rng(0).random((4, 9, 3)))
    with pytest.raises(FencliError, match="4 x 9 pixels.*at least 5 x 5"):
        read_scene(tmp_path / "s.npy")


# ----------------------------------------------------------------------------- bad inputs


def _raises(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(FencliError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_and_unknown_files(tmp_path):
    _raises("nope.mat: no such file", read_scene, tmp_path / "nope.mat")
    _raises("is a folder", read_scene, tmp_path)
    (tmp_path / "x.csv").write_text("1,2")
    _raises(r"unknown format \.csv; readable: \.mat, \.npy", read_scene, tmp_path / "x.csv")
    np.save(tmp_path / "s.npy", np.random.default_rng(0).random((6, 6, 2)))
    _raises("g.png: no such file", read_scene, tmp_path / "s.npy", gt=tmp_path / "g.png")
    _raises("not a permutation of h, w, b", read_scene, tmp_path / "x.csv", layout="hwx")


def test_corrupt_and_truncated_files(tmp_path, scene):
    cube, _ = scene
    (tmp_path / "junk.mat").write_bytes(os.urandom(300))
    _raises("cannot read .*junk.mat", read_scene, tmp_path / "junk.mat")
    scipy.io.savemat(tmp_path / "t.mat", {"data": cube, "map": np.ones((40, 48))})
    raw = (tmp_path / "t.mat").read_bytes()
    (tmp_path / "t.mat").write_bytes(raw[: len(raw) // 2])
    _raises("cannot read .*t.mat", read_scene, tmp_path / "t.mat")
    np.save(tmp_path / "t.npy", cube)
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[:-100])
    _raises("cannot read .*t.npy", read_scene, tmp_path / "t.npy")
    (tmp_path / "t.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    _raises("cannot read .*t.h5", read_scene, tmp_path / "t.h5")
    (tmp_path / "t.npz").write_bytes(b"PK\x03\x04broken")
    _raises("cannot read .*t.npz", read_scene, tmp_path / "t.npz")
    (tmp_path / "t.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    _raises("cannot read .*t.png", read_mask, tmp_path / "t.png")


def test_bad_envi_headers(tmp_path, scene):
    cube, _ = scene
    write_envi_scene(tmp_path / "s.hdr", cube)
    raw = (tmp_path / "s.img").read_bytes()
    (tmp_path / "s.img").write_bytes(raw[:-4])
    _raises(f"truncated: {len(raw) - 4} bytes, the header needs {len(raw)}", read_scene,
            tmp_path / "s.hdr")
    text = (tmp_path / "s.hdr").read_text()
    (tmp_path / "s.img").write_bytes(raw)
    for old, new, match in [("data type = 4", "data type = 6", "data type 6 is not supported"),
                            ("samples = 48\n", "", "lacks the required field 'samples'"),
                            ("interleave = bsq", "interleave = xyz", "interleave 'xyz'"),
                            ("lines = 40", "lines = forty", "lines = 'forty' is not an integer"),
                            ("ENVI\n", "NOTENVI\n", "not an ENVI header")]:
        (tmp_path / "s.hdr").write_text(text.replace(old, new))
        _raises(match, read_scene, tmp_path / "s.hdr")
    (tmp_path / "s.hdr").write_text(text)
    _raises("--layout does not apply", read_scene, tmp_path / "s.hdr", layout="bhw")
    _raises("--key does not apply", read_scene, tmp_path / "s.hdr", key="data")
    (tmp_path / "lone.img").write_bytes(raw)
    _raises("no ENVI header beside it", read_scene, tmp_path / "lone.img")
    (tmp_path / "s.img").unlink()
    _raises("no data file beside the header", read_scene, tmp_path / "s.hdr")


def test_key_errors(tmp_path, scene):
    cube, gt = scene
    np.savez(tmp_path / "flat.npz", a=cube[:, :, 0], b=gt)
    _raises(r"no 3-D numeric array \(found: a \(40 x 48 float32\), b \(40 x 48 uint8\)\)",
            read_scene, tmp_path / "flat.npz")
    np.savez(tmp_path / "two.npz", first=cube, second=cube[::-1], small=cube[:10])
    _raises("two largest 3-D arrays of equal size, 'first' and 'second': name the cube with --key",
            read_scene, tmp_path / "two.npz")
    assert read_scene(tmp_path / "two.npz", key="second").cube[0, 0, 0] == cube[-1, 0, 0]
    _raises(r"no array 'third'; available: first \(40 x 48 x 30 float32\), second", read_scene,
            tmp_path / "two.npz", key="third")
    _raises("'b' in flat.npz is 40 x 48 uint8, not a 3-D numeric cube", read_scene,
            tmp_path / "flat.npz", key="b")
    _raises("no array 'nope'; available", read_scene, tmp_path / "two.npz", key="first",
            gt_key="nope")
    np.save(tmp_path / "s.npy", cube)
    _raises("single array: --key does not apply", read_scene, tmp_path / "s.npy", key="data")
    np.savez(tmp_path / "g.npz", x=gt, y=gt)
    _raises("cannot tell which array of g.npz is the ground truth.*--gt-key", read_mask,
            tmp_path / "g.npz")
    np.save(tmp_path / "g3.npy", np.zeros((40, 48, 3)))
    _raises("ground truth 'array' in g3.npy is 40 x 48 x 3, not a 2-D map", read_mask,
            tmp_path / "g3.npy", "array")


def test_ground_truth_of_another_shape(tmp_path, scene):
    cube, gt = scene
    np.save(tmp_path / "s.npy", cube)
    np.save(tmp_path / "g.npy", gt[:39])
    _raises("ground truth .*g.npy is 39 x 48 but the scene is 40 x 48$", read_scene,
            tmp_path / "s.npy", gt=tmp_path / "g.npy")
    np.save(tmp_path / "g.npy", gt.T)
    _raises(r"is 48 x 40 but the scene is 40 x 48 \(transposed\? check --layout\)", read_scene,
            tmp_path / "s.npy", gt=tmp_path / "g.npy")


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_refuses_overwrite_and_cleans_up(tmp_path, scene):
    cube, _ = scene
    target = tmp_path / "out.npy"
    write_array(target, cube)
    _raises("out.npy already exists; pass --force to overwrite it", write_array, target, cube[:5])
    write_array(target, cube[:6], force=True)
    assert np.load(target).shape == (6, 48, 30)
    with pytest.raises(RuntimeError):
        with atomic_path(target, force=True) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".npy" and tmp != target
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert np.load(target).shape == (6, 48, 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]
    _raises(r"unknown extension \.txt; supported: \.npy, \.mat, \.h5", write_array,
            tmp_path / "x.txt", cube)
    _raises("folder .*missing does not exist", write_array, tmp_path / "missing" / "x.npy", cube)
    write_envi_scene(tmp_path / "e.hdr", cube)
    (tmp_path / "e.hdr").unlink()
    _raises("e.img already exists", write_envi_scene, tmp_path / "e.hdr", cube)
    assert not (tmp_path / "e.hdr").exists()
    assert (tmp_path / "e.img").stat().st_mode & 0o777 == 0o666 & ~output._umask()  # not mkstemp's 0600


# ----------------------------------------------------------------------------- shared data


@pytest.mark.shared
def test_shared_hydice(shared):
    s = read_scene(shared / "data" / "hydice.mat")
    assert s.cube.shape == (80, 100, 162) and s.cube.dtype == np.uint16
    assert s.gt.shape == (80, 100) and s.gt.dtype == bool and int(s.gt.sum()) == 17
    assert s.meta["key"] == "data" and s.meta["gt_key"] == "map" and s.name == "hydice"
