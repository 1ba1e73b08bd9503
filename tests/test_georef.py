"""Georeferencing: ENVI map info <-> affine transform, CRS, GeoTIFF round trips.

GDAL's own ENVI driver (through rasterio) is the oracle: it reads the same synthetic header we
parse, so a wrong 1-based reference pixel, sign or CRS shows up as a mismatch.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from fencli import georef as G
from fencli.errors import FencliError
from fencli.formats.geotiff import read_geotiff
from fencli.output import write_geotiff
from fencli.synthetic import planted_scene

try:  # the gis extra: GDAL (through rasterio) is the oracle, and GeoTIFF needs it; the rest does not
    import rasterio
    from rasterio.crs import CRS
except ImportError:
    rasterio = CRS = None
needs_rasterio = pytest.mark.skipif(rasterio is None, reason="needs rasterio (pip install 'fencli[gis]')")

MAP_INFO = "{UTM, 1, 1, 500000.0, 4100000.0, 2.0, 2.0, 11, North, WGS-84}"
# what ENVI writes: ESRI-flavoured WKT (CRS.from_epsg(32611).to_wkt(version="WKT1_ESRI"), held as text
# so the tests without rasterio read the same header; test_map_info_matches_gdal checks it is 32611)
CSS = ('PROJCS["WGS_1984_UTM_Zone_11N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",'
       '6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],'
       'PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],'
       'PARAMETER["Central_Meridian",-117.0],PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],'
       'UNIT["Meter",1.0]]')
HDR = """ENVI
description = {fencli test scene}
samples = {w}
lines = {h}
bands = {b}
header offset = 0
file type = ENVI Standard
data type = 4
interleave = bsq
byte order = 0
map info = {map_info}
coordinate system string = {{{css}}}
"""


def write_envi(folder: Path, cube: np.ndarray, map_info: str = MAP_INFO, css: str | None = CSS,
               name: str = "scene") -> Path:
    """A float32 BSQ ENVI scene ``name.img`` + ``name.hdr``; returns the .hdr path."""
    h, w, b = cube.shape
    np.ascontiguousarray(cube.transpose(2, 0, 1), dtype="<f4").tofile(folder / f"{name}.img")
    text = HDR.replace("{w}", str(w)).replace("{h}", str(h)).replace("{b}", str(b))
    text = text.replace("{map_info}", map_info)
    text = text.replace("{{{css}}}", "{" + css + "}") if css else text.replace("coordinate system string = {{{css}}}\n", "")
    (folder / f"{name}.hdr").write_text(text)
    return folder / f"{name}.hdr"


def gdal_view(hdr: Path) -> tuple[tuple, CRS | None]:
    with rasterio.open(hdr.with_suffix(".img")) as src:
        return tuple(src.transform)[:6], src.crs


@needs_rasterio
def test_map_info_matches_gdal_and_is_one_based(tmp_path):
    cube, _ = planted_scene(12, 10, 4, n_anomalies=1)
    hdr = write_envi(tmp_path, cube)
    g = G.from_envi(MAP_INFO, "{" + CSS + "}")
    transform, crs = gdal_view(hdr)
    assert g.transform == pytest.approx(transform, abs=1e-9)
    # reference pixel (1, 1) is the upper-left CORNER: the first pixel's centre is 1 m in
    assert g.transform == (2.0, 0.0, 500000.0, 0.0, -2.0, 4100000.0)
    assert g.xy(0, 0) == (500001.0, 4099999.0)
    assert CRS.from_user_input(g.crs) == crs == CRS.from_epsg(32611)
    assert g.epsg() == 32611


@needs_rasterio
@pytest.mark.parametrize("map_info", [
    "{UTM, 1.5, 1.5, 500001.0, 4099999.0, 2.0, 2.0, 11, North, WGS-84, units=Meters}",  # centre of pixel 1
    "{UTM, 4, 3, 500006.0, 4099996.0, 2.0, 2.0, 11, North, WGS-84}",  # another reference pixel
])
def test_reference_pixel_anywhere_gives_same_grid(tmp_path, map_info):
    g = G.from_envi(map_info)
    assert g.transform == pytest.approx((2.0, 0.0, 500000.0, 0.0, -2.0, 4100000.0))
    assert g.crs == "EPSG:32611"  # derived from the map info alone
    hdr = write_envi(tmp_path, np.zeros((5, 6, 2), np.float32), map_info, css=None)
    transform, crs = gdal_view(hdr)
    assert g.transform == pytest.approx(transform)
    assert crs == CRS.from_epsg(32611)


@needs_rasterio
def test_rotation_and_southern_utm_like_gdal(tmp_path):
    mi = "{UTM, 2, 3, 300000.0, 6000000.0, 2.0, 3.0, 33, South, WGS-84, units=Meters, rotation=30.0}"
    hdr = write_envi(tmp_path, np.zeros((4, 5, 1), np.float32), mi, css=None)
    transform, crs = gdal_view(hdr)
    g = G.from_envi(mi)
    assert g.transform == pytest.approx(transform, abs=1e-9)
    assert g.crs == "EPSG:32733" and crs == CRS.from_epsg(32733)


@pytest.mark.parametrize("bad", ["{UTM, 1, 1, x, 4100000.0, 2, 2}", "{UTM, 1, 1}", "{UTM, 1, 1, 5, 4, 0, 2, 11, North, WGS-84}"])
def test_bad_map_info_is_a_clear_error(bad):
    with pytest.raises(FencliError, match="map info"):
        G.parse_map_info(bad)


@needs_rasterio
def test_geotiff_round_trip_keeps_transform_and_crs(tmp_path):
    """The issue's acceptance test: ENVI input -> GeoTIFF output with the input's grid and CRS."""
    cube, gt = planted_scene(20, 24, 8, n_anomalies=3, seed=3)
    hdr = write_envi(tmp_path, cube)
    g = G.from_envi(MAP_INFO, "{" + CSS + "}")
    scores = np.linalg.norm(cube - cube.mean((0, 1)), axis=2).astype(np.float32)
    scores[0, 0] = np.nan
    out = write_geotiff(tmp_path / "map.tif", scores, g, descriptions=["anomaly score (GRX)"],
                        nodata=float("nan"))
    in_transform, in_crs = gdal_view(hdr)
    with rasterio.open(out) as src:
        assert tuple(src.transform)[:6] == pytest.approx(in_transform, abs=1e-9)
        assert src.crs == in_crs
        assert src.dtypes == ("float32",) and src.descriptions == ("anomaly score (GRX)",)
        assert np.isnan(src.nodata) and src.compression.name.lower() == "deflate"
        back = src.read(1)
    np.testing.assert_array_equal(back[1:], scores[1:])
    assert np.isnan(back[0, 0])
    # and fencli reads it back as the same georeferenced raster
    arr, g2, meta = read_geotiff(out)
    assert arr.shape == (20, 24, 1)
    assert g2.transform == pytest.approx(g.transform) and g2.epsg() == 32611
    with pytest.raises(FencliError, match="exists"):
        write_geotiff(out, scores, g)


@needs_rasterio
def test_multiband_geotiff_input_with_wavelengths(tmp_path):
    cube = np.random.default_rng(0).random((6, 7, 3)).astype(np.float32)
    g = G.GeoRef((0.5, 0.0, 10.0, 0.0, -0.5, 20.0), "EPSG:4326")
    path = write_geotiff(tmp_path / "cube.tif", cube, g, descriptions=["450 nm", "550 nm", "650.5 nm"])
    arr, g2, meta = read_geotiff(path)
    np.testing.assert_array_equal(arr, cube)
    assert g2.transform == pytest.approx(g.transform) and g2.epsg() == 4326
    assert meta["wavelengths"] == [450.0, 550.0, 650.5]


@needs_rasterio
def test_pixel_grid_output_has_no_georeferencing(tmp_path):
    with warnings.catch_warnings():  # a marker naming rasterio's warning class would need rasterio to load
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        path = write_geotiff(tmp_path / "plain.tif", np.ones((5, 5), np.float32), None)
        with rasterio.open(path) as src:
            assert src.crs is None and src.transform.is_identity
        assert read_geotiff(path)[1] is None
    assert G.json_fields(None) == {"georeferenced": False, "crs": None, "transform": None}
    assert "no georeferencing" in G.describe(None)


@needs_rasterio
def test_envi_fields_from_a_geotiff_grid_are_read_back_by_gdal(tmp_path):
    """A GeoTIFF-sourced grid written as ENVI: GDAL must see the same transform and CRS."""
    g = G.GeoRef((30.0, 0.0, 600000.0, 0.0, -30.0, 5000000.0), CRS.from_epsg(32633).to_wkt())
    fields = G.envi_fields(g)
    assert fields["map info"].startswith("UTM, 1, 1, 600000.0, 5000000.0, 30.0, 30.0, 33, North, WGS-84")
    hdr = write_envi(tmp_path, np.zeros((3, 4, 1), np.float32), "{" + fields["map info"] + "}",
                     css=fields["coordinate system string"])
    transform, crs = gdal_view(hdr)
    assert transform == pytest.approx(g.transform) and crs == CRS.from_epsg(32633)
    # an ENVI-sourced grid repeats its own strings verbatim
    e = G.from_envi(MAP_INFO, "{" + CSS + "}")
    assert G.envi_fields(e) == {"map info": MAP_INFO[1:-1], "coordinate system string": CSS}


def test_from_meta_forms():
    assert G.from_meta({}) is None and G.from_meta(None) is None
    e = G.from_meta({"georef": {"map info": MAP_INFO, "coordinate system string": "{" + CSS + "}"}})
    assert e.transform[2] == 500000.0 and e.crs == CSS  # its EPSG code: test_epsg_of_a_wkt_crs
    gdal_order = G.from_meta({"georef": {"geotransform": [100.0, 2.0, 0.0, 200.0, 0.0, -2.0], "crs": b"EPSG:32611"}})
    assert gdal_order.transform == (2.0, 0.0, 100.0, 0.0, -2.0, 200.0) and gdal_order.crs == "EPSG:32611"
    with pytest.raises(FencliError, match="6 finite numbers"):
        G.from_meta({"georef": {"transform": [1.0, 2.0]}})


@needs_rasterio
def test_epsg_of_a_wkt_crs():
    assert G.from_envi(MAP_INFO, "{" + CSS + "}").epsg() == 32611
    assert G.GeoRef((30.0, 0.0, 600000.0, 0.0, -30.0, 5000000.0), CRS.from_epsg(32633).to_wkt()).epsg() == 32633


def test_missing_rasterio_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rasterio", None)
    monkeypatch.setitem(sys.modules, "rasterio.crs", None)
    assert G.from_envi(MAP_INFO, "{" + CSS + "}").epsg() is None  # a WKT CRS: no code without rasterio
    assert G.GeoRef((1.0, 0.0, 0.0, 0.0, -1.0, 0.0), "EPSG:32633").epsg() == 32633  # an EPSG name: parsed
    with pytest.raises(FencliError, match=r"pip install 'fencli\[gis\]'"):
        write_geotiff(tmp_path / "x.tif", np.zeros((3, 3), np.float32), None)
    with pytest.raises(FencliError, match="rasterio"):
        read_geotiff(tmp_path / "x.tif")


# ------------------------------------------------------------------- end to end: fencli detect

def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    from fencli.cli import main

    monkeypatch.setattr(sys, "argv", ["fencli", "detect", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as err:
        code = err.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@needs_rasterio
def test_detect_on_georeferenced_envi_scene(tmp_path, monkeypatch, capsys):
    """Planted anomalies in a UTM ENVI scene: GeoTIFF/ENVI outputs on the input's grid, objects at
    the planted map coordinates."""
    import json

    from scipy import ndimage

    cube, gt = planted_scene(30, 40, 20, n_anomalies=5, seed=5, fraction=0.6)
    hdr = write_envi(tmp_path, cube)
    np.save(tmp_path / "gt.npy", gt)
    n = int(gt.sum())
    args = [hdr, "--gt", tmp_path / "gt.npy", "--far", n / gt.size, "--out", tmp_path / "map.tif",
            "--mask", tmp_path / "mask.hdr", "--objects", tmp_path / "objs.csv",
            "--quicklook", tmp_path / "ql.png", "--json"]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    row = json.loads(out)
    assert row["auc"] == 1.0 and row["georeferenced"] is True and row["crs"] == "EPSG:32611"
    gt_labels, n_gt = ndimage.label(gt, structure=np.ones((3, 3)))
    assert row["objects"]["count"] == n_gt and row["objects"]["recall"] == 1.0
    assert row["objects"]["precision"] == 1.0 and row["objects"]["threshold"]["flagged_pixels"] == n
    in_transform, in_crs = gdal_view(hdr)
    with rasterio.open(tmp_path / "map.tif") as src:
        assert tuple(src.transform)[:6] == pytest.approx(in_transform) and src.crs == in_crs
    data = [p for p in tmp_path.glob("mask*") if p.suffix != ".hdr" and not p.name.endswith(".aux.xml")]
    with rasterio.open(data[0]) as src:  # GDAL reads fencli's ENVI header beside the data file
        assert tuple(src.transform)[:6] == pytest.approx(in_transform) and src.crs == in_crs
        np.testing.assert_array_equal(src.read(1), gt)
    import csv

    rows = list(csv.DictReader(open(tmp_path / "objs.csv")))
    got = sorted((float(r["x"]), float(r["y"])) for r in rows)
    planted = [np.argwhere(gt_labels == i).mean(0) for i in range(1, n_gt + 1)]
    want = sorted((500000.0 + 2 * (c + 0.5), 4100000.0 - 2 * (r + 0.5)) for r, c in planted)
    assert len(got) == len(want)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-6)
    assert (tmp_path / "ql.png").stat().st_size > 0


@pytest.mark.parametrize("extra, message", [
    (["--far", "-0.001"], "--far"),
    (["--threshold", "101%"], "percentile"),
    (["--threshold", "lots"], "unreadable threshold"),
    (["--threshold", "3", "--far", "0.01"], "not both"),
    (["--objects", "o.csv", "--polygons"], "--polygons"),
])
def test_detect_bad_thresholds_are_one_line_errors(tmp_path, monkeypatch, capsys, extra, message):
    hdr = write_envi(tmp_path, planted_scene(10, 10, 5, n_anomalies=1)[0])
    code, out, err = run_cli([hdr, *extra], monkeypatch, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == ""


@needs_rasterio
def test_detect_without_georeferencing_says_so(tmp_path, monkeypatch, capsys):
    import json

    cube, gt = planted_scene(20, 20, 10, n_anomalies=2, seed=1)
    np.save(tmp_path / "cube.npy", cube)
    code, out, err = run_cli([tmp_path / "cube.npy", "--threshold", "99%", "--out", tmp_path / "m.tif",
                              "--objects", tmp_path / "o.geojson", "--json"], monkeypatch, capsys)
    assert code == 0, err
    row = json.loads(out)
    assert row["georeferenced"] is False and row["objects"]["threshold"]["flagged_pixels"] == 4
    assert "no georeferencing" in err
    doc = json.loads((tmp_path / "o.geojson").read_text())
    assert doc["fencli:grid"] == "pixel" and "crs" not in doc


@needs_rasterio
def test_geotiff_scene_in_envi_and_hdf5_out(tmp_path, monkeypatch, capsys):
    """GeoTIFF input (read with rasterio) -> ENVI / HDF5 outputs georeferenced like it; .npy says it can't."""
    import json

    from fencli.io import read_scene

    cube, gt = planted_scene(24, 30, 12, n_anomalies=3, seed=2, fraction=0.6)
    grid = G.GeoRef((30.0, 0.0, 600000.0, 0.0, -30.0, 5000000.0), "EPSG:32633")
    write_geotiff(tmp_path / "scene.tif", cube, grid, descriptions=[f"{w} nm" for w in range(400, 520, 10)])
    scene = read_scene(tmp_path / "scene.tif")
    assert scene.cube.shape == (24, 30, 12) and scene.meta["wavelengths"][0] == 400.0
    assert G.from_meta(scene.meta).transform == pytest.approx(grid.transform)
    with pytest.raises(FencliError, match="--layout, --key"):
        read_scene(tmp_path / "scene.tif", layout="bhw")
    code, out, err = run_cli([tmp_path / "scene.tif", "--threshold", "auto", "--out", tmp_path / "map.hdr",
                              "--mask", tmp_path / "mask.h5", "--json"], monkeypatch, capsys)
    assert code == 0, err
    row = json.loads(out)
    assert row["crs"] == "EPSG:32633" and row["transform"] == list(grid.transform)
    with rasterio.open(tmp_path / "map.img") as src:
        assert tuple(src.transform)[:6] == pytest.approx(grid.transform) and src.crs == CRS.from_epsg(32633)
    import h5py

    with h5py.File(tmp_path / "mask.h5") as f:  # the georeferencing rides as dataset attributes
        assert f["mask"].dtype == np.uint8
        back = G.from_meta({"georef": {k: v.decode() if isinstance(v, bytes) else v
                                       for k, v in f["mask"].attrs.items()}})
    assert back.transform == pytest.approx(grid.transform) and back.epsg() == 32633
    code, out, err = run_cli([tmp_path / "scene.tif", "--out", tmp_path / "map.npy", "--quicklook",
                              tmp_path / "q.png"], monkeypatch, capsys)
    assert code == 0 and ".npy holds no georeferencing" in err and "--threshold auto" in err


def test_hdf5_scene_attributes_give_the_grid(tmp_path):
    import h5py

    from fencli.io import read_scene

    cube, _ = planted_scene(10, 12, 6, n_anomalies=1)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        ds = f.create_dataset("cube", data=cube)
        ds.attrs["geotransform"] = [600000.0, 30.0, 0.0, 5000000.0, 0.0, -30.0]  # GDAL order
        ds.attrs["crs"] = "EPSG:32633"
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f.create_dataset("cube", data=cube).attrs.update(G.envi_fields(G.from_envi(MAP_INFO, CSS)))
    a = G.from_meta(read_scene(tmp_path / "a.h5").meta)
    b = G.from_meta(read_scene(tmp_path / "b.h5").meta)
    assert a.transform == (30.0, 0.0, 600000.0, 0.0, -30.0, 5000000.0) and a.epsg() == 32633
    assert b.transform == (2.0, 0.0, 500000.0, 0.0, -2.0, 4100000.0) and b.crs == CSS
    assert G.from_meta(read_scene(tmp_path / "a.h5").meta | {"georef": {"units": "m"}}) is None
