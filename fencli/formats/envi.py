"""ENVI raster files (``.hdr`` text header + flat binary data) without the Spectral dependency.

ENVI is how many remote-sensing tools hand over cubes too big for one array file: a header naming
``samples`` (width), ``lines`` (height), ``bands``, the ``data type``, the ``interleave``
(BSQ / BIL / BIP), the ``byte order`` and a ``header offset``, beside a raw data file. Reading maps
the data with :class:`numpy.memmap` and transposes the *view* to ``H x W x B``, so nothing is read
until a slice is used. Atomic writing (temp file + rename) is left to :mod:`fencli.output`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fencli.errors import FencliError
from fencli.formats.base import unreadable

# ENVI "data type" codes; complex types (6, 9) are not hyperspectral cubes and are refused.
DTYPES: dict[int, str] = {1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 12: "u2", 13: "u4",
                          14: "i8", 15: "u8"}
CODES: dict[str, int] = {v: k for k, v in DTYPES.items()}
DATA_SUFFIXES = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".bin", ".envi")
AXES = {"bsq": "bhw", "bil": "hbw", "bip": "hwb"}  # the file's axis order of each interleave
GEOREF_FIELDS = ("map info", "coordinate system string", "projection info", "geo points")

_FIELD = re.compile(r"^\s*([^=]+?)\s*=\s*(.*)$")


def parse_header(text: str, source: Path | str = "header") -> dict[str, str]:
    """Header fields, lower-cased keys, brace values joined onto one line (braces removed)."""
    lines = text.splitlines()
    if not lines or not lines[0].strip().upper().startswith("ENVI"):
        raise FencliError(f"{source} is not an ENVI header (its first line is not 'ENVI')")
    fields: dict[str, str] = {}
    i = 1
    while i < len(lines):
        match = None if lines[i].lstrip().startswith(";") else _FIELD.match(lines[i])
        i += 1
        if not match:
            continue
        key, value = match.group(1).strip().lower(), match.group(2).strip()
        if value.startswith("{"):
            while "}" not in value and i < len(lines):
                value += " " + lines[i].strip()
                i += 1
            if "}" not in value:
                raise FencliError(f"{source}: the value of {key!r} opens '{{' but never closes it")
            value = value[1:value.rindex("}")].strip()
        fields[key] = value
    return fields


def float_list(value: str) -> list[float] | None:
    """``"400.1, 410.2, ..."`` -> floats; None when any item is not a number."""
    try:
        return [float(v) for v in value.replace("\n", " ").split(",") if v.strip()]
    except ValueError:
        return None


def header_for(path: Path) -> Path:
    """The ``.hdr`` that describes ``path`` (the header itself, or a data file beside one)."""
    if path.suffix.lower() == ".hdr":
        return path
    for hdr in (path.with_name(path.name + ".hdr"), path.with_suffix(".hdr"),
                path.with_suffix(".HDR"), path.with_name(path.name + ".HDR")):
        if hdr.is_file():
            return hdr
    raise FencliError(f"{path}: no ENVI header beside it (looked for {path.name}.hdr and "
                      f"{path.with_suffix('.hdr').name})")


def data_for(hdr: Path) -> Path:
    """The binary file a header describes: ``x.hdr`` -> ``x``, ``x.img``, ``x.dat``, ...

    ``x.img.hdr`` names its data ``x.img`` (ENVI's own habit); the header's ``data file`` field wins.
    """
    candidates = [hdr.with_suffix(s) for s in DATA_SUFFIXES]
    candidates += [hdr.with_suffix(s.upper()) for s in DATA_SUFFIXES if s]
    for cand in candidates:
        if cand != hdr and cand.is_file():
            return cand
    raise FencliError(f"{hdr}: no data file beside the header (looked for "
                      f"{', '.join(hdr.with_suffix(s).name for s in DATA_SUFFIXES)})")


def _int_field(fields: dict[str, str], key: str, source: Path, default: int | None = None) -> int:
    if key not in fields:
        if default is None:
            raise FencliError(f"ENVI header {source} lacks the required field {key!r}")
        return default
    try:
        return int(fields[key].split()[0])
    except (ValueError, IndexError):
        raise FencliError(f"ENVI header {source}: {key} = {fields[key]!r} is not an integer") from None


def read_cube(path: Path) -> tuple[np.memmap, dict]:
    """Read-only ``H x W x B`` memmap view of an ENVI raster and the scene metadata it states
    (georeferencing fields, wavelengths, data file, interleave, the whole header)."""
    hdr = header_for(path)
    try:
        fields = parse_header(hdr.read_text(errors="replace"), hdr)
    except OSError as err:
        raise FencliError(f"cannot read ENVI header {hdr}: {err.strerror or err}") from None
    if "data file" in fields:
        data = hdr.parent / fields["data file"]
    else:
        data = path if path.suffix.lower() != ".hdr" else data_for(hdr)
    width, height, bands, code = (_int_field(fields, k, hdr)
                                  for k in ("samples", "lines", "bands", "data type"))
    offset, order = (_int_field(fields, k, hdr, 0) for k in ("header offset", "byte order"))
    interleave = fields.get("interleave", "bsq").strip().lower()
    if code not in DTYPES:
        raise FencliError(f"ENVI header {hdr}: data type {code} is not supported "
                          f"(supported: {', '.join(map(str, sorted(DTYPES)))})")
    if interleave not in AXES:
        raise FencliError(f"ENVI header {hdr}: interleave {interleave!r} is not one of bsq, bil, bip")
    if order not in (0, 1):
        raise FencliError(f"ENVI header {hdr}: byte order {order} is neither 0 (little) nor 1 (big)")
    if min(width, height, bands) < 1 or offset < 0:
        raise FencliError(f"ENVI header {hdr}: {height} lines x {width} samples x {bands} bands "
                          f"with offset {offset} is not a raster")
    dtype = np.dtype(("<" if order == 0 else ">") + DTYPES[code])
    need = offset + width * height * bands * dtype.itemsize
    try:
        have = data.stat().st_size
    except OSError:
        raise FencliError(f"{hdr}: its data file {data} does not exist") from None
    if have < need:
        raise FencliError(f"ENVI data {data} is truncated: {have} bytes, the header needs {need} "
                          f"({height} x {width} x {bands} {dtype.name} after {offset} header bytes)")
    axes = AXES[interleave]
    shape = tuple({"h": height, "w": width, "b": bands}[a] for a in axes)
    try:
        cube = np.memmap(data, dtype=dtype, mode="r", offset=offset, shape=shape).transpose(
            [axes.index(a) for a in "hwb"])
    except (OSError, ValueError) as err:
        raise unreadable(path, err) from None
    georef = {k: fields[k] for k in GEOREF_FIELDS if k in fields}
    wavelengths = float_list(fields["wavelength"]) if "wavelength" in fields else None
    return cube, {"format": "envi", "key": None, "georef": georef or None, "nodata": ignore_value(fields, hdr),
                  "wavelengths": wavelengths if wavelengths is not None and len(wavelengths) == bands else None,
                  "data_file": str(data), "interleave": interleave, "header": fields}


def ignore_value(fields: dict[str, str], source: Path | str = "header") -> list[float]:
    """The header's ``data ignore value`` (ENVI's nodata) as a one-item list; empty when absent."""
    text = fields.get("data ignore value", "").strip()
    if not text:
        return []
    try:
        return [float(text.split()[0])]
    except ValueError:
        raise FencliError(f"ENVI header {source}: data ignore value = {text!r} is not a number") from None


def format_header(shape: tuple[int, int, int], dtype: np.dtype, *, interleave: str = "bsq",
                  header_offset: int = 0, meta: dict | None = None) -> str:
    """Header text for an ``H x W x B`` raster; ``meta`` may carry georef fields and wavelengths."""
    height, width, bands = shape
    dtype = np.dtype(dtype)
    code = CODES.get(dtype.newbyteorder("=").str[1:])
    if code is None:
        raise FencliError(f"ENVI cannot store {dtype.name} data "
                          f"(supported: {', '.join(np.dtype(d).name for d in CODES)})")
    order = 1 if dtype.byteorder == ">" or (dtype.byteorder == "=" and not np.little_endian) else 0
    lines = ["ENVI", "description = {written by fencli}", f"samples = {width}", f"lines = {height}",
             f"bands = {bands}", f"header offset = {header_offset}", "file type = ENVI Standard",
             f"data type = {code}", f"interleave = {interleave}", f"byte order = {order}"]
    meta = meta or {}
    georef = meta.get("georef") or {}
    for key in filter(georef.get, GEOREF_FIELDS):
        value = georef[key]
        value = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        lines.append(f"{key} = {{{value}}}")
    wavelengths = meta.get("wavelengths")
    if wavelengths is not None and len(wavelengths) == bands:
        lines.append("wavelength = {" + ", ".join(f"{float(v):g}" for v in wavelengths) + "}")
        if meta.get("wavelength units"):
            lines.append(f"wavelength units = {meta['wavelength units']}")
    if meta.get("nodata") is not None:  # ENVI's nodata; GDAL and fencli read "nan" as NaN
        value = float(meta["nodata"])
        lines.append(f"data ignore value = {'nan' if value != value else repr(value)}")
    return "\n".join(lines) + "\n"


def write_data(out: BinaryIO, cube: np.ndarray, dtype: np.dtype, interleave: str = "bsq") -> None:
    """Stream ``cube`` (``H x W x B``: an array, memmap or lazy cube) in the file order of ``interleave``,
    one slab of its first axis at a time (a band for BSQ, a line for BIL and BIP)."""
    if interleave not in AXES:
        raise FencliError(f"interleave {interleave!r} is not one of bsq, bil, bip")
    view = cube.transpose(["hwb".index(a) for a in AXES[interleave]])
    for i in range(view.shape[0]):
        out.write(np.ascontiguousarray(np.asarray(view[i]), dtype=dtype).tobytes())
