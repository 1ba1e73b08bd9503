"""Georeferencing: where each pixel of a scene lies on the ground, carried from input to every output.

The model is an affine ``transform`` in rasterio's order ``(a, b, c, d, e, f)``::

    x = a * col + b * row + c        y = d * col + e * row + f

where ``(col, row)`` are pixel-CORNER coordinates: ``(0, 0)`` is the upper-left corner of the
upper-left pixel and the centre of pixel ``[r, c]`` is ``(c + 0.5, r + 0.5)``. This is GDAL's and
rasterio's convention, so a transform read from a GeoTIFF is used as is.

ENVI's ``map info`` names a reference pixel with 1-BASED corner coordinates: ``(1, 1)`` is the
upper-left corner of the upper-left pixel and ``(1.5, 1.5)`` its centre. :func:`parse_map_info`
converts, matching what GDAL's ENVI driver reads from the same header (checked in the tests).

GeoTIFF is read by :mod:`fencli.formats.geotiff` and every output written by :mod:`fencli.output`;
here rasterio (the ``gis`` extra) only names a WKT CRS, imported when that is asked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from fencli.errors import FencliError

Transform = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class GeoRef:
    """A pixel grid on the ground: affine ``transform`` and ``crs`` (WKT or ``EPSG:n``, or None).

    ``map_info`` / ``coordinate_system`` keep the input's raw ENVI strings, so an ENVI output
    repeats them verbatim.
    """

    transform: Transform
    crs: str | None = None
    map_info: str | None = None
    coordinate_system: str | None = None

    def xy(self, row: np.ndarray | float, col: np.ndarray | float) -> tuple[Any, Any]:
        """Map coordinates of the CENTRE of pixel ``[row, col]`` (0-based indices, may be fractional)."""
        a, b, c, d, e, f = self.transform
        u, v = np.asarray(col, dtype=float) + 0.5, np.asarray(row, dtype=float) + 0.5
        return a * u + b * v + c, d * u + e * v + f

    def epsg(self) -> int | None:
        """The EPSG code of the CRS when one is known (needs rasterio for a WKT CRS)."""
        if self.crs is None:
            return None
        m = re.fullmatch(r"\s*EPSG:(\d+)\s*", self.crs, re.I)
        if m:
            return int(m.group(1))
        try:
            from rasterio.crs import CRS

            return CRS.from_user_input(self.crs).to_epsg()
        except Exception:  # no rasterio, or an unusual WKT: no EPSG code, still a valid CRS
            return None


# --------------------------------------------------------------------------------------- ENVI

def parse_map_info(map_info: str) -> tuple[Transform, str | None]:
    """(transform, CRS or None) from an ENVI ``map info`` string.

    ``{proj, ref_x, ref_y, easting, northing, px, py[, zone, North|South], datum[, units=..][, rotation=deg]}``.
    The CRS is derived only where the string pins it down (UTM or Geographic on WGS-84); otherwise
    the header's ``coordinate system string`` must give it. A ``rotation`` is folded in exactly as
    GDAL's ENVI driver does (the reference-pixel offset is applied unrotated, as GDAL does).
    """
    f = [v.strip() for v in map_info.strip().lstrip("{").rstrip("}").split(",")]  # with or without braces
    try:
        proj = f[0]
        ref_x, ref_y, east, north, px, py = (float(v) for v in f[1:7])
    except (IndexError, ValueError):
        raise FencliError(f"unreadable ENVI map info {map_info!r}: expected "
                          "{projection, ref x, ref y, easting, northing, pixel x, pixel y, ...}") from None
    if not (px > 0 and py > 0):
        raise FencliError(f"ENVI map info has a non-positive pixel size ({px:g}, {py:g})")
    keys = {k.strip().lower(): v.strip() for k, v in (kv.split("=", 1) for kv in f[7:] if "=" in kv)}
    rot = math.radians(float(keys.get("rotation", 0.0)))
    cos, sin = math.cos(rot), math.sin(rot)
    transform = (cos * px, sin * px, east - (ref_x - 1.0) * px,
                 sin * py, -cos * py, north + (ref_y - 1.0) * py)
    positional = [v for v in f[7:] if "=" not in v]
    crs = None
    pname = proj.lower()
    if pname == "utm" and len(positional) >= 3 and _wgs84(positional[2]):
        zone, hemi = int(float(positional[0])), positional[1].strip().lower()
        crs = f"EPSG:{(32600 if hemi.startswith('n') else 32700) + zone}"
    elif pname.startswith("geographic") and positional and _wgs84(positional[0]):
        crs = "EPSG:4326"
    return transform, crs


def _wgs84(datum: str) -> bool:
    return datum.strip().replace("-", "").replace(" ", "").lower() == "wgs84"


def format_map_info(georef: GeoRef) -> str:
    """An ENVI ``map info`` string for ``georef`` (its own raw string when it came from ENVI).

    Written with reference pixel (1, 1) = the upper-left corner. UTM/WGS-84 and geographic WGS-84
    get their ENVI names; any other CRS is ``Arbitrary`` and relies on the coordinate system string.
    """
    if georef.map_info:
        return georef.map_info
    a, b, c, d, e, f = georef.transform
    if abs(b) > 1e-12 or abs(d) > 1e-12:
        raise FencliError("a rotated grid cannot be written as an ENVI map info by fencli: use --out .tif")
    head = f"1, 1, {c!r}, {f!r}, {a!r}, {-e!r}"
    code = georef.epsg()
    if code is not None and (32601 <= code <= 32660 or 32701 <= code <= 32760):
        hemi = "North" if code < 32700 else "South"
        return f"{{UTM, {head}, {code % 100}, {hemi}, WGS-84, units=Meters}}"
    if code == 4326:
        return f"{{Geographic Lat/Lon, {head}, WGS-84, units=Degrees}}"
    return f"{{Arbitrary, {head}, units=Meters}}" if georef.crs else f"{{Arbitrary, {head}}}"


def envi_fields(georef: GeoRef | None) -> dict[str, str]:
    """Header fields (``map info``, ``coordinate system string``) that georeference an ENVI output,
    without the braces (``fencli.formats.envi`` adds them), as it reads them."""
    if georef is None:
        return {}
    out = {"map info": _unbrace(format_map_info(georef))}
    css = georef.coordinate_system or _wkt(georef.crs)
    if css:
        out["coordinate system string"] = _unbrace(css)
    return out


def _unbrace(text: str) -> str:
    text = text.strip()
    return text[1:-1].strip() if text.startswith("{") and text.endswith("}") else text


def _wkt(crs: str | None) -> str | None:
    if crs is None or not re.fullmatch(r"\s*EPSG:\d+\s*", crs, re.I):
        return crs
    try:
        from rasterio.crs import CRS
    except ImportError:
        return None  # the map info alone still names UTM / geographic WGS-84
    return CRS.from_user_input(crs).to_wkt()


def from_envi(map_info: str | None, coordinate_system: str | None = None) -> GeoRef | None:
    """GeoRef from the raw ENVI header strings; None when there is no ``map info``.

    The ``coordinate system string`` (WKT, often ESRI-flavoured) wins over the CRS implied by the
    map info, as in GDAL.
    """
    if not map_info:
        return None
    transform, crs = parse_map_info(map_info)
    css = _unbrace(coordinate_system) if coordinate_system else None
    return GeoRef(transform, css or crs, map_info=map_info, coordinate_system=coordinate_system)


# --------------------------------------------------------------------------- scene metadata

def from_meta(meta: dict | None) -> GeoRef | None:
    """The georeferencing a reader left in ``meta["georef"]``, or None (a pixel grid).

    Accepted keys: ENVI ``map info`` / ``coordinate system string``; or ``transform`` (6 numbers,
    rasterio order) / ``geotransform`` (6 numbers, GDAL order) with ``crs`` (WKT or EPSG:n), as a
    GeoTIFF reader or HDF5 attributes give them; or a ready :class:`GeoRef` under ``"georef"``.
    """
    g = (meta or {}).get("georef")
    if g is None or isinstance(g, GeoRef):
        return g
    if g.get("map info"):
        return from_envi(g["map info"], g.get("coordinate system string"))
    crs = g.get("crs") or g.get("crs_wkt") or g.get("spatial_ref")
    crs = crs.decode() if isinstance(crs, bytes) else (str(crs) if crs is not None else None)
    if g.get("transform") is not None:
        return GeoRef(_six(g["transform"], "transform"), crs)
    if g.get("geotransform") is not None:
        c, a, b, f, d, e = _six(g["geotransform"], "geotransform")
        return GeoRef((a, b, c, d, e, f), crs)
    return None


def _six(values: Any, what: str) -> Transform:
    v = [float(x) for x in np.asarray(values, dtype=float).reshape(-1)]
    if len(v) < 6 or not all(math.isfinite(x) for x in v[:6]):
        raise FencliError(f"the {what} attribute must hold 6 finite numbers, got {values!r}")
    return tuple(v[:6])  # type: ignore[return-value]


def describe(georef: GeoRef | None) -> str:
    """One line for stderr: what grid the outputs are on."""
    if georef is None:
        return "input has no georeferencing: outputs are on the pixel grid (x = column, y = row)"
    code = georef.epsg()
    crs = f"EPSG:{code}" if code is not None else "unknown" if georef.crs is None else georef.crs[:40] + "..."
    return f"georeferenced: CRS {crs}, pixel {georef.transform[0]:g} x {-georef.transform[4]:g}"


def json_fields(georef: GeoRef | None) -> dict[str, Any]:
    """The ``--json`` fields that say how outputs are georeferenced."""
    if georef is None:
        return {"georeferenced": False, "crs": None, "transform": None}
    code = georef.epsg()
    return {"georeferenced": True, "crs": f"EPSG:{code}" if code else georef.crs,
            "transform": list(georef.transform)}
