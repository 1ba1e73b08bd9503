"""From a score map to objects an analyst can act on: a threshold, a mask, connected components.

Threshold semantics (one rule for every form): the mask is ``scores > threshold`` (strict), over the
finite scores only (NaN/Inf pixels are never detections).

- ``--threshold 3.5``: that score value.
- ``--far F`` (false-alarm rate against the score distribution of the scene): with ``n`` finite
  pixels, ``k = floor(F * n)`` pixels may be flagged; the threshold is the ``(k+1)``-th largest
  score, i.e. the empirical ``(1 - F)`` quantile taken as an order statistic (no interpolation).
  Without ties exactly ``k`` pixels lie above it. Ties AT the threshold are all excluded, so the
  flagged fraction never exceeds ``F`` (it may be lower when many pixels share that score).
- ``--threshold 99.5%``: the same rule with ``F = 1 - 99.5 / 100``.
- ``--threshold auto``: ``median + 5 * 1.4826 * MAD`` of the scores (see :func:`robust_threshold`).
  It never looks at the ground truth, so evaluating with it is honest.
- ``--threshold f1``: the pixel-F1-optimal threshold against the ground truth. An ORACLE: for
  judging how good the map could be at best, never for real scenes (it needs the answer).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from fencli.errors import FencliError
from fencli.metrics import roc_curve

EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity for scipy.ndimage.label
AUTO_K = 5.0  # robust z-score of the auto threshold
MAD_SIGMA = 1.4826  # MAD -> standard deviation for a normal distribution


@dataclass(frozen=True)
class ThresholdRule:
    """What the user asked for: ``kind`` in value/percentile/far/auto/f1 and its number."""

    kind: str
    number: float | None = None


@dataclass(frozen=True)
class Threshold:
    """The resolved threshold: the mask is ``scores > value``."""

    value: float
    rule: ThresholdRule
    flagged: int  # pixels above the threshold
    pixels: int  # finite pixels considered

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "rule": self.rule.kind, "requested": self.rule.number,
                "flagged_pixels": self.flagged, "flagged_fraction": self.flagged / max(self.pixels, 1),
                "oracle": self.rule.kind == "f1"}


_NUM = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"


def parse_threshold(threshold: str | None, far: float | str | None = None) -> ThresholdRule | None:
    """Parse ``--threshold`` / ``--far``; None when neither is given. Bad input is a FencliError."""
    if threshold is not None and far is not None:
        raise FencliError("give either --threshold or --far, not both")
    if far is not None:
        try:
            f = float(far)
        except ValueError:
            raise FencliError(f"--far must be a number in (0, 1], got {far!r}") from None
        if not (0.0 < f <= 1.0):
            raise FencliError(f"--far is a fraction of pixels in (0, 1], got {far}")
        return ThresholdRule("far", f)
    if threshold is None:
        return None
    t = threshold.strip().lower()
    if t in ("auto", "f1"):
        return ThresholdRule(t)
    if t.endswith("%"):
        if not re.fullmatch(_NUM, t[:-1].strip()):
            raise FencliError(f"unreadable percentile {threshold!r}: use e.g. 99.5%")
        p = float(t[:-1])
        if not (0.0 <= p <= 100.0):
            raise FencliError(f"a percentile lies in [0%, 100%], got {threshold}")
        return ThresholdRule("percentile", p)
    if not re.fullmatch(_NUM, t):
        raise FencliError(f"unreadable threshold {threshold!r}: give a score (3.5), a percentile (99.5%), "
                          "'auto' or 'f1', or use --far")
    v = float(t)
    if not math.isfinite(v):
        raise FencliError(f"the threshold must be finite, got {threshold}")
    return ThresholdRule("value", v)


def far_threshold(scores: np.ndarray, far: float) -> float:
    """The ``(k+1)``-th largest finite score, ``k = floor(far * n)``; -inf when every pixel may go."""
    s = _finite(scores)
    n = s.size
    k = math.floor(round(far * n, 6))  # 0.29 * 100 must give 29, not 28
    if k >= n:
        return -math.inf
    return float(np.partition(s, n - k - 1)[n - k - 1])


def robust_threshold(scores: np.ndarray, k: float = AUTO_K) -> float:
    """``median + k * 1.4826 * MAD``: a robust z-score cut that a few strong anomalies cannot move.

    Why this and not Otsu: anomalies are a tiny fraction of pixels, so the score histogram has no
    second mode for Otsu to split; mean + k*std is dragged up by the very anomalies it should flag.
    The median and MAD describe the background alone. ``k = 5`` keeps the background false alarms
    rare even for the right-skewed (chi-square-like) RX scores.
    """
    s = _finite(scores)
    med = float(np.median(s))
    mad = float(np.median(np.abs(s - med)))
    if mad == 0.0:  # more than half the pixels share one score: fall back to the spread above it
        mad = float(np.mean(np.abs(s - med)))
    return med + k * MAD_SIGMA * mad


def f1_threshold(scores: np.ndarray, gt: np.ndarray) -> float:
    """The strict threshold that maximises pixel F1 against ``gt`` (ties: the higher threshold)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(gt).reshape(-1) != 0
    if s.shape != y.shape:
        raise FencliError(f"ground truth has {y.size} pixels, the map {s.size}")
    ok = np.isfinite(s)
    s, y = s[ok], y[ok]
    if not y.any():
        raise FencliError("--threshold f1 needs ground truth with anomalous pixels")
    if y.all():
        return -math.inf  # every pixel is anomalous: flag them all
    pf, pd, thresholds = roc_curve(s, y)  # point k flags every score >= thresholds[k]
    n_pos = int(y.sum())
    tp = np.rint(pd[1:] * n_pos)
    fp = np.rint(pf[1:] * (y.size - n_pos))
    f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
    i = int(np.argmax(f1)) + 1
    # The mask is strict (score > threshold): return the next lower distinct score.
    return float(thresholds[i + 1]) if i + 1 < thresholds.size else -math.inf


def resolve(scores: np.ndarray, rule: ThresholdRule, gt: np.ndarray | None = None) -> Threshold:
    """The threshold value of ``rule`` on this map and how many pixels it flags."""
    if rule.kind == "value":
        value = float(rule.number)
    elif rule.kind in ("far", "percentile"):  # the percentile p is the FAR 1 - p / 100
        far = float(rule.number) if rule.kind == "far" else (100.0 - float(rule.number)) / 100.0
        value = far_threshold(scores, far)
    elif rule.kind == "auto":
        value = robust_threshold(scores)
    elif rule.kind == "f1":
        if gt is None:
            raise FencliError("--threshold f1 is an evaluation oracle: it needs --gt (use auto or --far)")
        value = f1_threshold(scores, gt)
    else:
        raise FencliError(f"unknown threshold rule {rule.kind!r}")
    s = _finite(scores)
    return Threshold(value, rule, int(np.count_nonzero(s > value)), int(s.size))


def make_mask(scores: np.ndarray, threshold: Threshold | float) -> np.ndarray:
    """uint8 mask, 1 where ``scores > threshold`` (NaN never)."""
    t = threshold.value if isinstance(threshold, Threshold) else float(threshold)
    s = np.asarray(scores, dtype=np.float64)
    return (np.isfinite(s) & (s > t)).astype(np.uint8)


def _finite(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise FencliError("the score map has no finite value")
    return s


# ---------------------------------------------------------------------------- components

def components(mask: np.ndarray, min_pixels: int = 1) -> tuple[np.ndarray, int]:
    """8-connected components of ``mask`` with at least ``min_pixels`` pixels: (labels int32, count)."""
    from scipy import ndimage  # 0.2 s to import: only when objects are asked for

    if min_pixels < 1:
        raise FencliError(f"--min-pixels must be at least 1, got {min_pixels}")
    labels, n = ndimage.label(np.asarray(mask) != 0, structure=EIGHT)
    if min_pixels > 1 and n:
        keep = np.bincount(labels.reshape(-1), minlength=n + 1) >= min_pixels
        keep[0] = False
        remap = np.cumsum(keep) * keep  # the kept components renumbered 1..k in scan order
        labels, n = remap[labels], int(keep.sum())
    return labels.astype(np.int32), int(n)


def find_objects(scores: np.ndarray, mask: np.ndarray, *, min_pixels: int = 1, georef=None,
                 gt: np.ndarray | None = None) -> tuple[list[dict[str, Any]], np.ndarray]:
    """(objects sorted by peak score descending, label image whose values are the objects' ids).

    Each object: ``id`` (1 = highest peak), ``row``/``col`` = unweighted centroid of its pixels in
    0-based pixel indices (pixel ``[r, c]`` has its centre at row ``r``, col ``c``); ``x``/``y`` =
    map coordinates of that centroid (pixel-centre convention, see :mod:`fencli.georef`) or None
    without georeferencing; ``area_px``; ``peak_score``/``mean_score``; ``peak_row``/``peak_col``;
    inclusive bounding box ``row_min, col_min, row_max, col_max``; ``hit`` (overlaps a ground-truth
    pixel) when ``gt`` is given; ``lon``/``lat`` (WGS-84) when the CRS is known and rasterio is there.
    """
    from scipy import ndimage  # 0.2 s to import: only when objects are asked for

    scores = np.asarray(scores, dtype=np.float64)
    labels, n = components(mask, min_pixels)
    if n == 0:
        return [], labels
    idx = np.arange(1, n + 1)
    safe = np.nan_to_num(scores, nan=-np.inf)
    peak = np.asarray(ndimage.maximum(safe, labels, idx), dtype=float)
    area = np.bincount(labels.reshape(-1), minlength=n + 1)[1:]
    mean = np.asarray(ndimage.mean(scores, labels, idx), dtype=float)
    # rank: peak descending, then larger area, then label order (scan order) for determinism
    order = np.lexsort((idx, -area, -peak))
    labels = np.r_[0, np.argsort(order) + 1].astype(np.int32)[labels]  # old label -> its rank
    peak, area, mean = peak[order], area[order], mean[order]  # now indexed by new id - 1
    centroids = ndimage.center_of_mass(np.ones_like(labels, dtype=np.float64), labels, idx)
    peaks_at = ndimage.maximum_position(safe, labels, idx)
    boxes = ndimage.find_objects(labels)
    hits = None
    if gt is not None:
        g = np.asarray(gt) != 0
        if g.shape != labels.shape:
            raise FencliError(f"ground truth shape {g.shape} differs from the map's {labels.shape}")
        hits = np.asarray(ndimage.maximum(g, labels, idx), dtype=bool)
    objects = []
    for i, ((r, c), box, (pr, pc)) in enumerate(zip(centroids, boxes, peaks_at)):
        x, y = map(float, georef.xy(r, c)) if georef is not None else (None, None)
        obj: dict[str, Any] = {"id": i + 1, "row": float(r), "col": float(c), "x": x, "y": y,
                               "area_px": int(area[i]), "peak_score": float(peak[i]), "mean_score": float(mean[i]),
                               "peak_row": int(pr), "peak_col": int(pc),
                               "row_min": box[0].start, "col_min": box[1].start,
                               "row_max": box[0].stop - 1, "col_max": box[1].stop - 1}
        if hits is not None:
            obj["hit"] = bool(hits[i])
        objects.append(obj)
    if georef is not None:
        _add_lonlat(objects, georef)
    return objects, labels


def _add_lonlat(objects: list[dict[str, Any]], georef) -> None:
    """WGS-84 ``lon``/``lat`` of each centroid when the CRS is known and rasterio can reproject."""
    if georef.crs is None:
        return
    try:
        from rasterio.errors import CRSError
        from rasterio.warp import transform
    except ImportError:  # without the gis extra: map coordinates only
        return
    try:
        lon, lat = transform(georef.crs, "EPSG:4326", [o["x"] for o in objects], [o["y"] for o in objects])
    except CRSError:  # a CRS that PROJ cannot reproject: map coordinates only
        return
    for o, a, b in zip(objects, lon, lat):
        o["lon"], o["lat"] = float(a), float(b)


def evaluate(labels: np.ndarray, gt: np.ndarray) -> dict[str, Any]:
    """Object-level scores against ``gt``: an object hits when it overlaps a ground-truth pixel.

    precision = hitting objects / objects (None without objects); recall = ground-truth components
    (8-connected) touched by some object / ground-truth components.
    """
    from scipy import ndimage  # 0.2 s to import: only when objects are asked for

    g = np.asarray(gt) != 0
    gt_labels, n_gt = ndimage.label(g, structure=EIGHT)
    n_obj = int(labels.max()) if labels.size else 0
    hits = int(np.count_nonzero(ndimage.maximum(g, labels, np.arange(1, n_obj + 1)))) if n_obj else 0
    touched = (int(np.count_nonzero(ndimage.maximum(labels > 0, gt_labels, np.arange(1, n_gt + 1))))
               if n_gt else 0)
    return {"count": n_obj, "hits": hits, "gt_objects": int(n_gt), "gt_touched": touched,
            "precision": hits / n_obj if n_obj else None,
            "recall": touched / n_gt if n_gt else None}


def outline_segments(labels: np.ndarray) -> np.ndarray:
    """Pixel-edge outline of every object: ``N x 2 x 2`` segments ``[[x0, y0], [x1, y1]]`` in pixel
    corner coordinates (x = column, y = row), for drawing."""
    inside = np.pad(np.asarray(labels) > 0, 1)
    segs = []
    # a horizontal edge lies between rows r-1 and r where exactly one side is inside
    rr, cc = np.nonzero(inside[1:, 1:-1] != inside[:-1, 1:-1])
    segs.append(np.stack([np.stack([cc, rr], -1), np.stack([cc + 1, rr], -1)], 1))
    rr, cc = np.nonzero(inside[1:-1, 1:] != inside[1:-1, :-1])
    segs.append(np.stack([np.stack([cc, rr], -1), np.stack([cc, rr + 1], -1)], 1))
    return np.concatenate(segs).astype(float)


# ------------------------------------------------------------------------------ writers

CSV_COLUMNS = ("id", "row", "col", "x", "y", "lon", "lat", "area_px", "peak_score", "mean_score", "peak_row", "peak_col",
               "row_min", "col_min", "row_max", "col_max", "hit")


def write_objects(path, objects: list[dict[str, Any]], *, georef=None, labels: np.ndarray | None = None,
                  polygons: bool = False, force: bool = False):
    """Write the object table as ``.csv`` or ``.geojson`` (``.json``), atomically.

    GeoJSON holds one Feature per object: its centroid as a Point, or with ``polygons`` its pixel
    outline (needs ``labels`` and rasterio). Coordinates are in the scene's CRS, named in the legacy
    ``crs`` member that GDAL/QGIS read (RFC 7946 readers assume lon/lat: reproject if you need that);
    without georeferencing they are pixel-grid coordinates (x = column, y = row, from the upper-left
    corner, so a pixel centre is at ``col + 0.5, row + 0.5``).
    """
    from pathlib import Path

    from fencli.output import csv_text, write_text

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if polygons:
            raise FencliError("--polygons needs a GeoJSON objects file (.geojson): CSV holds one row per object")
        cols = [c for c in CSV_COLUMNS if c not in ("hit", "lon", "lat") or (objects and c in objects[0])]
        text = csv_text(cols, ([o.get(c) for c in cols] for o in objects))
    elif suffix in (".geojson", ".json"):
        text = _geojson(objects, georef, labels if polygons else None, polygons)
    else:
        raise FencliError(f"--objects must end in .csv or .geojson, got {path.name}")
    return write_text(path, text, force)


def _geojson(objects: list[dict[str, Any]], georef, labels: np.ndarray | None, polygons: bool) -> str:
    import json

    shapes = _polygons(labels, georef) if polygons else {}
    features = []
    for o in objects:
        xy = [o["x"], o["y"]] if georef is not None else [o["col"] + 0.5, o["row"] + 0.5]
        geom = shapes[o["id"]] if polygons else {"type": "Point", "coordinates": xy}
        features.append({"type": "Feature", "id": o["id"], "geometry": geom, "properties": dict(o)})
    doc: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    code = georef.epsg() if georef is not None else None
    if code is not None:
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{code}"}}
    doc["fencli:grid"] = "map" if georef is not None else "pixel"
    return json.dumps(doc, indent=1) + "\n"


def _polygons(labels: np.ndarray, georef) -> dict[int, dict]:
    """Outline of each labelled object as a GeoJSON (Multi)Polygon via rasterio.features.shapes."""
    try:
        from rasterio.features import shapes
        from rasterio.transform import Affine
    except ImportError:
        raise FencliError("--polygons needs rasterio: pip install 'fencli[gis]'") from None
    transform = Affine(*georef.transform) if georef is not None else Affine.identity()
    lab = np.ascontiguousarray(labels, dtype=np.int32)
    parts: dict[int, list] = {}
    for geom, value in shapes(lab, mask=lab > 0, connectivity=8, transform=transform):
        parts.setdefault(int(value), []).append(geom["coordinates"])
    return {k: ({"type": "Polygon", "coordinates": v[0]} if len(v) == 1
                else {"type": "MultiPolygon", "coordinates": v}) for k, v in parts.items()}


# ------------------------------------------------------------------------------ one call

@dataclass
class Detection:
    """Everything the thresholded map gives: the mask, labelled objects and their evaluation."""

    threshold: Threshold
    mask: np.ndarray
    labels: np.ndarray
    objects: list[dict[str, Any]]
    evaluation: dict[str, Any] | None
    min_pixels: int

    def summary(self) -> dict[str, Any]:
        """The ``"objects"`` block of ``fencli detect --json``."""
        ev = self.evaluation or {}
        return {"count": len(self.objects), "precision": ev.get("precision"), "recall": ev.get("recall"),
                "hits": ev.get("hits"), "gt_objects": ev.get("gt_objects"), "gt_touched": ev.get("gt_touched"),
                "threshold": self.threshold.as_json(), "min_pixels": self.min_pixels,
                "connectivity": 8}


def detect_objects(scores: np.ndarray, rule: ThresholdRule, *, min_pixels: int = 1, georef=None,
                   gt: np.ndarray | None = None) -> Detection:
    """Threshold ``scores`` by ``rule``, label the 8-connected objects, evaluate against ``gt``."""
    threshold = resolve(scores, rule, gt)
    mask = make_mask(scores, threshold)
    objs, labels = find_objects(scores, mask, min_pixels=min_pixels, georef=georef, gt=gt)
    evaluation = evaluate(labels, gt) if gt is not None else None
    return Detection(threshold, mask, labels, objs, evaluation, min_pixels)
