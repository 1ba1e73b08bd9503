"""Thresholds, connected components, object tables and their files."""

from __future__ import annotations

import csv
import importlib.util
import json
import math

import numpy as np
import pytest

from fencli import objects as O
from fencli.errors import FencliError
from fencli.georef import GeoRef

UTM11 = GeoRef((2.0, 0.0, 500000.0, 0.0, -2.0, 4100000.0), "EPSG:32611")


def distinct_scores(n: int = 10000, seed: int = 0) -> np.ndarray:
    """The values 0..n-1 in random order, as a 100 x (n/100) map: counts above any cut are known."""
    return np.random.default_rng(seed).permutation(n).astype(np.float64).reshape(100, -1)


# ------------------------------------------------------------------------------ parsing

@pytest.mark.parametrize("text, far, expected", [
    ("3.5", None, O.ThresholdRule("value", 3.5)),
    ("-2e1", None, O.ThresholdRule("value", -20.0)),
    ("99.5%", None, O.ThresholdRule("percentile", 99.5)),
    (" AUTO ", None, O.ThresholdRule("auto")),
    ("f1", None, O.ThresholdRule("f1")),
    (None, 1e-3, O.ThresholdRule("far", 1e-3)),
    (None, "0.5", O.ThresholdRule("far", 0.5)),
    (None, None, None),
])
def test_parse_threshold(text, far, expected):
    assert O.parse_threshold(text, far) == expected


@pytest.mark.parametrize("text, far, message", [
    (None, -1e-3, "--far"), (None, 0.0, "--far"), (None, 1.5, "--far"), (None, "lots", "--far"),
    ("100.5%", None, "percentile"), ("-1%", None, "percentile"), ("abc%", None, "percentile"),
    ("high", None, "unreadable threshold"), ("3.5.1", None, "unreadable"), ("nan", None, "unreadable"),
    ("3", 1e-3, "not both"),
])
def test_bad_thresholds_are_clear_errors(text, far, message):
    with pytest.raises(FencliError, match=message):
        O.parse_threshold(text, far)


# ----------------------------------------------------------------------------- counting

@pytest.mark.parametrize("text, far, count", [
    ("9000.5", None, 999),  # values 9001..9999
    ("9000", None, 999),  # strict: the pixel AT the threshold is not flagged
    ("99.5%", None, 50),
    ("90%", None, 1000),
    ("100%", None, 0),
    ("0%", None, 10000),
    (None, 1e-3, 10),
    (None, 0.0029, 29),  # floor(0.0029 * 10000) = 29 despite 28.999... in floating point
    (None, 1.0, 10000),
])
def test_thresholds_flag_expected_pixel_counts(text, far, count):
    scores = distinct_scores()
    t = O.resolve(scores, O.parse_threshold(text, far))
    mask = O.make_mask(scores, t)
    assert mask.dtype == np.uint8 and int(mask.sum()) == count == t.flagged
    if count:  # the flagged pixels are exactly the top `count` scores
        assert scores[mask == 1].min() == 10000 - count


def test_far_threshold_is_the_inverted_cdf_quantile():
    s = np.random.default_rng(1).gamma(2.0, size=(50, 40))
    for far in (0.001, 0.01, 0.05, 0.25):
        q = np.quantile(s, 1 - far, method="inverted_cdf")
        assert O.far_threshold(s, far) == q
        assert int((s > q).sum()) == round(far * s.size)


def test_ties_at_the_threshold_never_exceed_the_far():
    scores = np.r_[np.arange(90.0), np.full(10, 100.0)].reshape(10, 10)  # ten pixels tie at the top
    t = O.resolve(scores, O.ThresholdRule("far", 0.05))  # 5 allowed, but they tie with 5 more
    assert t.value == 100.0 and t.flagged == 0
    t = O.resolve(scores, O.ThresholdRule("far", 0.10))
    assert t.value == 89.0 and t.flagged == 10


def test_nan_pixels_are_never_flagged_nor_counted():
    scores = distinct_scores(1000).reshape(10, 100)
    scores[0, :10] = np.nan
    t = O.resolve(scores, O.ThresholdRule("far", 0.01))
    assert t.pixels == 990 and t.flagged == 9
    assert O.make_mask(scores, t)[0, :10].sum() == 0


def test_auto_threshold_is_median_plus_five_robust_sigmas():
    rng = np.random.default_rng(2)
    scores = rng.normal(10.0, 2.0, size=(200, 200))
    scores[50, 50:55] = 40.0  # strong anomalies do not move a median/MAD rule
    t = O.resolve(scores, O.ThresholdRule("auto"))
    assert t.value == pytest.approx(20.0, abs=0.3)  # 10 + 5 * 2
    assert 5 <= t.flagged <= 5 + 10  # the anomalies plus ~0.00003 of 40000 background pixels
    assert O.make_mask(scores, t)[50, 50:55].all()


def test_f1_threshold_maximises_pixel_f1_by_brute_force():
    rng = np.random.default_rng(3)
    gt = (rng.random((30, 30)) < 0.05).astype(np.uint8)
    scores = rng.normal(size=(30, 30)) + 2.0 * gt
    scores = np.round(scores, 1)  # ties on purpose

    def f1(t):
        m = scores > t
        tp = np.sum(m & (gt == 1))
        return 2 * tp / (m.sum() + gt.sum())

    best = max(f1(t) for t in np.r_[-np.inf, np.unique(scores)])
    t = O.resolve(scores, O.ThresholdRule("f1"), gt)
    assert f1(t.value) == pytest.approx(best) and t.as_json()["oracle"] is True
    with pytest.raises(FencliError, match="needs --gt"):
        O.resolve(scores, O.ThresholdRule("f1"))


# --------------------------------------------------------------------------- components

def planted_map(h: int = 40, w: int = 50):
    """A background map with four planted objects of known shape, peak and place."""
    rng = np.random.default_rng(4)
    scores = rng.uniform(0.0, 1.0, size=(h, w))
    planted = {  # peak: pixels
        9.0: [(5, 5), (5, 6), (6, 5), (6, 6)],  # 2 x 2 square, centroid (5.5, 5.5)
        7.0: [(20, 30), (21, 31), (22, 32)],  # a diagonal: ONE object under 8-connectivity
        8.0: [(30, 10)],  # a single pixel
        5.0: [(10, 40), (10, 41), (10, 42), (11, 41)],  # a T
    }
    gt = np.zeros((h, w), np.uint8)
    for peak, pix in planted.items():
        for k, (r, c) in enumerate(pix):
            scores[r, c] = peak - 0.5 * (k > 0)
            gt[r, c] = 1
    return scores, gt, planted


def test_objects_sorted_by_peak_with_map_coordinates_of_the_planted_pixels():
    scores, gt, planted = planted_map()
    mask = O.make_mask(scores, 2.0)
    objs, labels = O.find_objects(scores, mask, georef=UTM11, gt=gt)
    assert [o["peak_score"] for o in objs] == [9.0, 8.0, 7.0, 5.0]
    for o, peak in zip(objs, (9.0, 8.0, 7.0, 5.0)):
        pix = np.array(planted[peak], dtype=float)
        r, c = pix.mean(0)
        assert (o["row"], o["col"]) == pytest.approx((r, c))
        # pixel-centre convention: x = 500000 + 2 (col + 0.5), y = 4100000 - 2 (row + 0.5)
        assert (o["x"], o["y"]) == pytest.approx((500000 + 2 * (c + 0.5), 4100000 - 2 * (r + 0.5)))
        assert o["area_px"] == len(pix) and o["hit"] is True
        assert np.array_equal(np.argwhere(labels == o["id"]), np.array(sorted(planted[peak])))
        assert (o["peak_row"], o["peak_col"]) == planted[peak][0]
        assert (o["row_min"], o["col_min"], o["row_max"], o["col_max"]) == (
            int(pix[:, 0].min()), int(pix[:, 1].min()), int(pix[:, 0].max()), int(pix[:, 1].max()))
        assert o["mean_score"] == pytest.approx(np.mean([scores[p] for p in planted[peak]]))
    square = objs[0]
    assert (square["x"], square["y"]) == (500012.0, 4099988.0)
    if importlib.util.find_spec("rasterio") is None:  # lon/lat need the gis extra
        assert "lon" not in square
    else:  # UTM 11N, false easting 500 km: on the central meridian -117 deg
        assert square["lon"] == pytest.approx(-117.0 + 12 / 111320 / np.cos(np.radians(square["lat"])), abs=1e-6)
        assert square["lat"] == pytest.approx(37.04, abs=0.01)


def test_min_pixels_and_pixel_grid():
    scores, gt, _ = planted_map()
    objs, labels = O.find_objects(scores, O.make_mask(scores, 2.0), min_pixels=3)
    assert [o["area_px"] for o in objs] == [4, 3, 4] and labels.max() == 3
    assert objs[0]["x"] is None and "hit" not in objs[0]
    with pytest.raises(FencliError, match="min-pixels"):
        O.components(np.ones((3, 3)), 0)


def test_object_precision_recall():
    scores, gt, _ = planted_map()
    scores[35, 45] = 6.0  # a false alarm
    gt[0, 49] = 1  # a missed ground-truth object
    objs, labels = O.find_objects(scores, O.make_mask(scores, 2.0), gt=gt)
    ev = O.evaluate(labels, gt)
    assert ev == {"count": 5, "hits": 4, "gt_objects": 5, "gt_touched": 4, "precision": 0.8, "recall": 0.8}
    assert [o["hit"] for o in objs] == [True, True, True, False, True]  # peaks 9, 8, 7, 6, 5
    gt2 = np.zeros_like(gt)
    gt2[5, 5] = gt2[20, 30] = 1  # two ground-truth components, two detections touch them
    ev2 = O.evaluate(labels, gt2)
    assert ev2["gt_objects"] == 2 and ev2["recall"] == 1.0 and ev2["precision"] == pytest.approx(2 / 5)
    assert O.evaluate(np.zeros_like(labels), gt)["precision"] is None


# ------------------------------------------------------------------------------ files

def test_csv_and_geojson_points(tmp_path):
    scores, gt, _ = planted_map()
    objs, labels = O.find_objects(scores, O.make_mask(scores, 2.0), georef=UTM11, gt=gt)
    O.write_objects(tmp_path / "o.csv", objs)
    rows = list(csv.DictReader(open(tmp_path / "o.csv")))
    assert [int(r["id"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[0]["x"]) == 500012.0 and rows[0]["hit"] == "True"
    O.write_objects(tmp_path / "o.geojson", objs, georef=UTM11)
    doc = json.loads((tmp_path / "o.geojson").read_text())
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32611"
    assert doc["features"][0]["geometry"] == {"type": "Point", "coordinates": [500012.0, 4099988.0]}
    with pytest.raises(FencliError, match="exists"):
        O.write_objects(tmp_path / "o.csv", objs)
    with pytest.raises(FencliError, match=".csv or .geojson"):
        O.write_objects(tmp_path / "o.txt", objs)
    with pytest.raises(FencliError, match="GeoJSON"):
        O.write_objects(tmp_path / "p.csv", objs, labels=labels, polygons=True)


def test_geojson_polygons_cover_the_object_pixels(tmp_path):
    pytest.importorskip("rasterio")
    scores, gt, planted = planted_map()
    objs, labels = O.find_objects(scores, O.make_mask(scores, 2.0), georef=UTM11)
    O.write_objects(tmp_path / "p.geojson", objs, georef=UTM11, labels=labels, polygons=True)
    feats = json.loads((tmp_path / "p.geojson").read_text())["features"]

    def ring_area(ring):
        x, y = np.array(ring).T
        return abs(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])) / 2

    for f, o in zip(feats, objs):
        g = f["geometry"]
        polys = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
        area = sum(ring_area(p[0]) - sum(ring_area(h) for h in p[1:]) for p in polys)
        assert area == pytest.approx(4.0 * o["area_px"])  # 2 m x 2 m pixels
        xs = [pt[0] for p in polys for pt in p[0]]
        assert min(xs) == 500000 + 2 * o["col_min"] and max(xs) == 500000 + 2 * (o["col_max"] + 1)


def test_outline_segments_trace_pixel_edges():
    labels = np.zeros((4, 4), np.int32)
    labels[1:3, 1:3] = 1
    segs = O.outline_segments(labels)
    assert len(segs) == 8  # a 2 x 2 square has 8 unit edges
    assert segs.min() == 1 and segs.max() == 3
    assert math.isclose(sum(np.abs(s[1] - s[0]).sum() for s in segs), 8.0)


def test_quicklook_bands_and_png(tmp_path):
    from fencli.quicklook import rgb_bands, save_quicklook

    wl = np.linspace(400, 2500, 224)
    (r, g, b), note = rgb_bands(224, wl)
    assert abs(wl[r] - 640) < 5 and abs(wl[g] - 550) < 5 and abs(wl[b] - 460) < 5 and "true colour" in note
    assert rgb_bands(224, wl / 1000.0)[0] == (r, g, b)  # micrometres
    assert rgb_bands(200, None)[0] == (149, 100, 50)  # 3/4, 1/2, 1/4 of the band range
    assert rgb_bands(10, np.linspace(1000, 2500, 10))[0] == (7, 4, 2)  # SWIR only: no true colour
    scores, gt, _ = planted_map()
    cube = np.random.default_rng(0).random((*scores.shape, 12))
    _, labels = O.find_objects(scores, O.make_mask(scores, 2.0))
    path = save_quicklook(tmp_path / "q.png", cube, scores, labels, title="GRX", threshold=2.0)
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[1] > img.shape[0]  # two panels side by side


def test_detect_objects_summary_is_the_json_block():
    scores, gt, _ = planted_map()
    found = O.detect_objects(scores, O.parse_threshold("2.0"), min_pixels=2, georef=UTM11, gt=gt)
    s = found.summary()
    assert (s["count"], s["precision"], s["recall"], s["gt_objects"]) == (3, 1.0, 0.75, 4)
    assert s["threshold"] == {"value": 2.0, "rule": "value", "requested": 2.0, "flagged_pixels": 12,
                              "flagged_fraction": 12 / 2000, "oracle": False}
    assert found.mask.sum() == 12 and found.labels.max() == 3
