"""GeoTIFF scenes through rasterio (the ``gis`` extra, imported on use), transform and CRS kept."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from fencli.errors import FencliError
from fencli.georef import GeoRef

EXTENSIONS = (".tif", ".tiff")


def import_rasterio() -> ModuleType:
    """The rasterio module, or the one line that says how to install it."""
    try:
        import rasterio
    except ImportError:
        raise FencliError("GeoTIFF needs rasterio: pip install 'fencli[gis]'") from None
    return rasterio


def read_geotiff(path: str | Path) -> tuple[np.ndarray, GeoRef | None, dict[str, Any]]:
    """(cube ``H x W x B``, georeferencing or None, meta) of a GeoTIFF (or any GDAL raster).

    Nodata pixels become NaN (the readers' ``--nan`` policy then applies). ``meta["wavelengths"]``
    is filled from the band descriptions or ``wavelength`` tags when they hold numbers.
    """
    rio = import_rasterio()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rio.errors.NotGeoreferencedWarning)
            with rio.open(path) as src:
                data = src.read(masked=src.nodata is not None)
                declared = None if src.nodata is None else float(src.nodata)
                transform, crs = src.transform, src.crs
                descriptions = list(src.descriptions)
                band_tags = [src.tags(i) for i in range(1, src.count + 1)]
    except rio.errors.RasterioIOError as err:
        raise FencliError(f"cannot read {path}: {err}") from None
    if np.ma.isMaskedArray(data):
        data = data.astype(np.result_type(data.dtype, np.float32)).filled(np.nan)
    georef = None
    if not transform.is_identity or crs is not None:
        georef = GeoRef(tuple(transform)[:6], crs.to_wkt() if crs else None)
    meta = {"georef": georef, "descriptions": descriptions, "nodata": declared,
            "wavelengths": _wavelengths(descriptions, band_tags)}
    return np.moveaxis(data, 0, -1), georef, meta


def read_cube(path: Path) -> tuple[np.ndarray, dict]:
    """A GeoTIFF cube and the scene metadata :func:`fencli.io.read_scene` reports (transform, CRS)."""
    cube, grid, extra = read_geotiff(path)
    georef = None if grid is None else {"transform": list(grid.transform), "crs": grid.crs}
    nodata = [float("nan")] if extra["nodata"] is not None else []  # its pixels were read as NaN
    return cube, {"format": "geotiff", "key": None, "georef": georef, "nodata": nodata,
                  "nodata_declared": extra["nodata"],
                  "wavelengths": extra["wavelengths"], "descriptions": extra["descriptions"]}


_NUMBER = re.compile(r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*(?:nm|um|µm|nanometers|micrometers)?", re.I)
_WITH_UNIT = re.compile(r"(\d+(?:\.\d*)?)\s*(?:nm|um|µm|nanometers|micrometers)\b", re.I)


def _wavelengths(descriptions: list[str | None], tags: list[dict]) -> list[float] | None:
    out = []
    for desc, tag in zip(descriptions, tags):
        text = tag.get("wavelength") or tag.get("WAVELENGTH")
        m = _NUMBER.fullmatch(text.strip()) if text else None
        m = m or (_WITH_UNIT.search(desc) if desc else None)  # "Band 12 (550.3 nm)"
        if not m:
            return None
        out.append(float(m.group(1)))
    return out or None
