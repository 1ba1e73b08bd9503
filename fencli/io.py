"""Scene input and output: the formats users actually hold, read lazily where the format allows.

Reading (:func:`read_scene`) returns the cube as ``H x W x B`` in its stored dtype:

============================  =======================================================  =========
extension                     how                                                       lazy
============================  =======================================================  =========
``.mat`` v4 / v5 / v7         :mod:`scipy.io`; only the chosen variables are loaded     no
``.mat`` v7.3 (HDF5)          :mod:`h5py`; MATLAB writes column-major, so every array   yes
                              is read with its axes reversed
``.npy``                      :func:`numpy.load` with ``mmap_mode="r"``                 yes
``.npz``                      only the chosen members are decompressed                  no
``.h5`` ``.hdf5`` ``.he5``    :mod:`h5py`                                               yes
ENVI ``.hdr`` + data          :mod:`fencli.envi` memmap (BSQ/BIL/BIP, either byte       yes
                              order, header offset, data types 1-5 and 12-15); give
                              the header or the data file (``.img``, ``.dat``, none...)
GeoTIFF ``.tif`` ``.tiff``    rasterio (the ``gis`` extra), bands = spectral bands;     no
                              transform + CRS in ``meta["georef"]``, nodata -> NaN
============================  =======================================================  =========

"Lazy" cubes are :class:`numpy.memmap` views or, for chunked/compressed HDF5 datasets,
:class:`LazyCube`: slicing (``cube[r0:r1]``) reads only that slice and ``np.asarray(cube)``
materializes it, so tiled or out-of-core code never has to hold the whole scene. Uncompressed
contiguous HDF5 datasets (what :func:`write_array` writes) are memory-mapped directly.

Ground truth is a 2-D array named ``map``/``gt``/``groundtruth``/``ground_truth``/``mask`` (any case)
in the same file, or a separate file read by :func:`read_mask` (array formats, single-band ENVI,
PNG/TIFF via Pillow). Nonzero means anomaly; in an RGB(A) image a pixel is an anomaly when any
colour channel is nonzero and it is not fully transparent. :func:`validate_cube` (run by
:func:`read_scene`, callable alone) refuses NaN/Inf, constant cubes and bands and scenes under
5 x 5 pixels. Every bad input is one :class:`FencliError` line.

Writing (:func:`write_array`) picks the format from the extension and is atomic
(:func:`atomic_path`: temp file in the same folder, renamed on success, never overwriting without
``force``); other modules use :func:`atomic_path` for their own PNG/JSON/CSV outputs.
"""

from __future__ import annotations

import glob
import json
import operator
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fencli import envi
from fencli.errors import FencliError
from fencli.preprocess import MIN_SIDE, checked_range
from fencli.tiles import iter_rows, open_cube, row_chunk

__all__ = ["Scene", "LazyCube", "read_scene", "read_mask", "validate_cube", "write_array",
           "write_envi_scene", "atomic_path", "READ_EXTENSIONS", "WRITE_EXTENSIONS", "GT_NAMES"]

GT_NAMES = ("map", "gt", "groundtruth", "ground_truth", "mask")  # priority order when several exist
WAVELENGTH_NAMES = ("wavelength", "wavelengths")
ARRAY_FORMATS = {".mat": "mat", ".npy": "npy", ".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5",
                 ".he5": "hdf5"}
IMAGE_EXTENSIONS = (".png", ".tif", ".tiff")
GEOTIFF_EXTENSIONS = (".tif", ".tiff")
READ_EXTENSIONS = (tuple(ARRAY_FORMATS) + (".hdr",) + tuple(s for s in envi.DATA_SUFFIXES if s)
                   + GEOTIFF_EXTENSIONS)
WRITE_EXTENSIONS = (".npy", ".mat", ".h5", ".hdf5", ".hdr", ".img")
_MAT_V5_LIMIT = 2**31 - 2**16  # v5 stores byte counts in 32 bits; MATLAB caps variables at 2 GB
_MATLAB_CLASSES = {"f8": "double", "f4": "single", "i1": "int8", "u1": "uint8", "i2": "int16",
                   "u2": "uint16", "i4": "int32", "u4": "uint32", "i8": "int64", "u8": "uint64",
                   "b1": "logical"}
_MAT_DTYPES = {v: np.dtype(k) for k, v in _MATLAB_CLASSES.items()}


@dataclass
class Scene:
    """A hyperspectral scene: ``cube`` is ``H x W x B`` (native dtype, possibly lazy), ``gt`` bool."""

    cube: np.ndarray = field(repr=False)
    gt: np.ndarray | None = field(repr=False)
    name: str
    path: Path
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.cube.shape)


class LazyCube:
    """Read-only array view of an h5py dataset with permuted axes; a slice reads only that slice.

    Supports what tiled code needs: ``shape``/``dtype``/``ndim``, integer and slice indexing,
    ``transpose`` and ``np.asarray`` (which reads everything). Other indexing materializes first.
    """

    def __init__(self, source: Any, perm: tuple[int, ...] | None = None) -> None:
        self.source = source
        self.perm = tuple(range(len(source.shape))) if perm is None else tuple(perm)
        self.shape = tuple(source.shape[p] for p in self.perm)
        self.dtype = np.dtype(source.dtype)

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape)))
    nbytes = property(lambda self: self.size * self.dtype.itemsize)
    T = property(lambda self: self.transpose())

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LazyCube(shape={self.shape}, dtype={self.dtype}, source={self.source!r})"

    def transpose(self, *axes: Any) -> LazyCube:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        axes = axes or tuple(reversed(range(self.ndim)))
        return LazyCube(self.source, tuple(self.perm[a] for a in axes))

    def astype(self, dtype: Any) -> np.ndarray:
        return np.asarray(self, dtype=dtype)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self[(slice(None),) * self.ndim]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        parts = _basic_index(key, self.ndim)
        if parts is None:
            return np.asarray(self)[key]
        src: list[Any] = [slice(None)] * self.ndim
        after: list[Any] = []
        for axis, part in enumerate(parts):
            size = self.shape[axis]
            if isinstance(part, slice):
                start, stop, step = part.indices(size)
                if step > 0:
                    src[self.perm[axis]] = slice(start, max(start, stop), step)
                    after.append(slice(None))
                else:  # the HDF5 library cannot step backwards: read the axis, reverse in memory
                    after.append(part)
            else:
                if not -size <= part < size:
                    raise IndexError(f"index {part} is out of bounds for axis {axis} with size {size}")
                src[self.perm[axis]] = part % size
        data = np.asarray(self.source[tuple(src)])
        kept = [a for a, p in enumerate(parts) if isinstance(p, slice)]
        order = sorted(self.perm[a] for a in kept)
        data = data.transpose([order.index(self.perm[a]) for a in kept])
        return data[tuple(after)] if any(s != slice(None) for s in after) else data


def _basic_index(key: Any, ndim: int) -> list[Any] | None:
    """``key`` as one int or slice per axis, or None when it is fancier than that."""
    key = key if isinstance(key, tuple) else (key,)
    if sum(k is Ellipsis for k in key) > 1:
        return None
    parts: list[Any] = []
    for k in key:
        if k is Ellipsis:
            parts.extend([slice(None)] * (ndim - len(key) + 1))
        elif isinstance(k, slice):
            parts.append(k)
        elif isinstance(k, (bool, np.bool_)) or k is None:
            return None
        else:
            try:
                parts.append(operator.index(k))
            except TypeError:
                return None
    if len(parts) > ndim:
        raise IndexError(f"too many indices: array is {ndim}-dimensional")
    return parts + [slice(None)] * (ndim - len(parts))


# ----------------------------------------------------------------------------- array files


@dataclass
class _Entry:
    """One array in a file: shape and dtype as the user sees them, and how to get it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    load: Callable[[], Any]

    @property
    def numeric(self) -> bool:
        return self.dtype.kind in "iuf"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def describe(self) -> str:
        return f"{' x '.join(map(str, self.shape)) or 'scalar'} {self.dtype.name}"


@dataclass
class _ArrayFile:
    entries: dict[str, _Entry]
    format: str
    attrs: Callable[[str], dict] = lambda name: {}
    close: Callable[[], None] = lambda: None


def _unreadable(path: Path, err: BaseException) -> FencliError:
    text = str(err).strip()
    reason = text.splitlines()[0] if text else type(err).__name__
    return FencliError(f"cannot read {path}: {reason} (truncated, corrupt or not that format?)")


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FencliError(f"{path}: no such file")
    if path.is_dir():
        raise FencliError(f"{path} is a folder, not a scene file")
    return path


def _format_of(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in ARRAY_FORMATS:
        return ARRAY_FORMATS[ext]
    if ext == ".hdr" or ext in envi.DATA_SUFFIXES:
        return "envi"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    try:
        envi.header_for(path)
        return "envi"
    except FencliError:
        raise FencliError(f"{path.name}: unknown format {ext or '(no extension)'}; readable: "
                          f"{', '.join(READ_EXTENSIONS)} (ENVI data needs its .hdr beside it)"
                          ) from None


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    """HDF5's signature at offset 0, 512, 1024, ... (a user block, 512 bytes in MATLAB v7.3): the test
    ``h5py.is_hdf5`` makes, without importing h5py for every v5 ``.mat``."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        offset = 0
        while offset + 8 <= size:
            f.seek(offset)
            if f.read(8) == _HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def _open_arrays(path: Path, fmt: str) -> _ArrayFile:
    try:
        if fmt == "mat" and _is_hdf5(path):
            return _h5_file(path, matlab=True)
        return {"mat": _mat_file, "npy": _npy_file, "npz": _npz_file,
                "hdf5": partial(_h5_file, matlab=False)}[fmt](path)
    except FencliError:
        raise
    except Exception as err:  # each library has its own exceptions for a bad file
        raise _unreadable(path, err) from None


def _mat_file(path: Path) -> _ArrayFile:
    import scipy.io

    entries = {}
    for name, shape, cls in scipy.io.whosmat(path):
        if cls in _MAT_DTYPES:
            entries[name] = _Entry(tuple(shape), _MAT_DTYPES[cls], partial(_mat_load, path, name))
    return _ArrayFile(entries, "mat-v5")


def _mat_load(path: Path, name: str) -> np.ndarray:
    import scipy.io

    return scipy.io.loadmat(path, variable_names=[name])[name]


def _npy_file(path: Path) -> _ArrayFile:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return _ArrayFile({"array": _Entry(arr.shape, arr.dtype, lambda: arr)}, "npy")


def _npz_file(path: Path) -> _ArrayFile:
    entries = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                shape, _, dtype = reader(fh)
            name = info.filename[:-4]
            entries[name] = _Entry(tuple(shape), np.dtype(dtype), partial(_npz_load, path, name))
    return _ArrayFile(entries, "npz")


def _npz_load(path: Path, name: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        return npz[name]


def _h5_file(path: Path, matlab: bool) -> _ArrayFile:
    import h5py

    handle = h5py.File(path, "r")
    entries: dict[str, _Entry] = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset) or obj.dtype.kind not in "biuf" or obj.size == 0:
            return
        if matlab:
            cls = obj.attrs.get("MATLAB_class", b"")
            cls = cls.decode() if isinstance(cls, bytes) else str(cls)
            if name.startswith("#") or "MATLAB_empty" in obj.attrs or cls not in ("", *_MAT_DTYPES):
                return
            dtype = np.dtype(bool) if cls == "logical" else obj.dtype
        else:
            dtype = obj.dtype
        shape = obj.shape[::-1] if matlab else obj.shape
        entries[name] = _Entry(tuple(shape), dtype, partial(_h5_array, path, obj, matlab))

    try:
        handle.visititems(visit)
    except Exception:
        handle.close()
        raise

    def attrs(name: str) -> dict:
        merged = _plain_attrs(handle.attrs)
        merged.update(_plain_attrs(handle[name].attrs))
        return merged

    return _ArrayFile(entries, "mat-v7.3" if matlab else "hdf5", attrs, handle.close)


def _h5_array(path: Path, ds: Any, reverse: bool) -> np.ndarray | LazyCube:
    """A memmap of a contiguous uncompressed dataset, else a :class:`LazyCube` over it."""
    perm = tuple(reversed(range(ds.ndim))) if reverse else tuple(range(ds.ndim))
    offset = None
    if ds.chunks is None and ds.compression is None and not getattr(ds, "external", None):
        try:
            offset = ds.id.get_offset()
        except Exception:
            offset = None
    if offset is not None and path.stat().st_size >= offset + ds.size * ds.dtype.itemsize:
        return np.memmap(path, dtype=ds.dtype, mode="r", offset=offset, shape=ds.shape).transpose(perm)
    return LazyCube(ds, perm)


def _plain_attrs(attrs: Any) -> dict:
    """HDF5 attributes as JSON-friendly values (MATLAB's bookkeeping left out)."""
    out: dict[str, Any] = {}
    for key in attrs:
        if key.startswith("MATLAB_"):
            continue
        try:
            value = attrs[key]
        except Exception:  # attribute types h5py cannot convert
            continue
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, np.ndarray):
            value = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in value.tolist()]
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _basename(name: str) -> str:
    return name.rsplit("/", 1)[-1].lower()


def _resolve(entries: dict[str, _Entry], key: str, path: Path) -> str:
    """The entry ``key`` names: exact, without a leading '/', or a unique case-blind base name."""
    if key in entries:
        return key
    if key.lstrip("/") in entries:
        return key.lstrip("/")
    same = [n for n in entries if _basename(n) == key.lower().lstrip("/")]
    if len(same) == 1:
        return same[0]
    listed = ", ".join(f"{n} ({e.describe()})" for n, e in list(entries.items())[:20])
    raise FencliError(f"{path.name} has no array {key!r}; available: {listed or 'none'}")


def _pick_cube(af: _ArrayFile, key: str | None, path: Path) -> str:
    """The named array, else the largest 3-D numeric one (a tie is an error, not a guess)."""
    if key is not None:
        name = _resolve(af.entries, key, path)
        entry = af.entries[name]
        if len(entry.shape) != 3 or not entry.numeric:
            raise FencliError(f"{name!r} in {path.name} is {entry.describe()}, not a 3-D numeric cube")
        return name
    cands = sorted((n for n, e in af.entries.items() if len(e.shape) == 3 and e.numeric),
                   key=lambda n: -af.entries[n].size)
    if not cands:
        found = ", ".join(f"{n} ({e.describe()})" for n, e in list(af.entries.items())[:20])
        raise FencliError(f"{path.name} holds no 3-D numeric array (found: {found or 'nothing'})")
    if len(cands) > 1 and af.entries[cands[0]].size == af.entries[cands[1]].size:
        raise FencliError(f"{path.name} holds two largest 3-D arrays of equal size, {cands[0]!r} and "
                          f"{cands[1]!r}: name the cube with --key")
    return cands[0]


def _mask_like(entry: _Entry) -> bool:
    return len(entry.shape) == 2 or (len(entry.shape) == 3 and 1 in entry.shape)


def _find_gt(af: _ArrayFile) -> str | None:
    """The conventional ground-truth name present (first of :data:`GT_NAMES`), if any."""
    by_name = {_basename(n): n for n, e in af.entries.items() if _mask_like(e)}
    return next((by_name[g] for g in GT_NAMES if g in by_name), None)


def _as_mask(arr: Any, source: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 3 and 1 in arr.shape:
        arr = arr.squeeze(axis=arr.shape.index(1))
    if arr.ndim != 2:
        raise FencliError(f"ground truth {source} is {' x '.join(map(str, arr.shape))}, not a 2-D map")
    if arr.dtype.kind not in "biuf":
        raise FencliError(f"ground truth {source} holds {arr.dtype} values, not numbers")
    return arr != 0


def _load(af: _ArrayFile, name: str, path: Path) -> Any:
    try:
        return af.entries[name].load()
    except FencliError:
        raise
    except Exception as err:
        raise _unreadable(path, err) from None


def _wavelengths(af: _ArrayFile, attrs: dict, bands: int) -> list[float] | None:
    """Band centres from an attribute or a vector variable named wavelength(s) of length B."""
    for key, value in attrs.items():
        if key.lower() in WAVELENGTH_NAMES and np.size(value) == bands:
            try:
                return [float(v) for v in np.ravel(value)]
            except (TypeError, ValueError):
                pass
    for name, entry in af.entries.items():
        if _basename(name) in WAVELENGTH_NAMES and entry.numeric and entry.size == bands:
            return [float(v) for v in np.ravel(np.asarray(entry.load()))]
    return None


# ----------------------------------------------------------------------------- reading


def _layout_perm(layout: str) -> tuple[int, int, int]:
    layout = layout.lower()
    if sorted(layout) != ["b", "h", "w"]:
        raise FencliError(f"layout {layout!r} is not a permutation of h, w, b (e.g. hwb, bhw, whb)")
    return tuple(layout.index(c) for c in "hwb")


def read_scene(path: str | os.PathLike, *, key: str | None = None,
               gt: str | os.PathLike | None = None, gt_key: str | None = None,
               layout: str = "hwb", nan: str = "error", constant_bands: str = "error",
               validate: bool = True) -> Scene:
    """Read a scene as ``H x W x B`` (lazy where the format allows) plus its optional ground truth.

    ``layout`` names the stored axis order (``"bhw"`` for bands-first files). ``gt`` is a separate
    ground-truth file (``gt_key`` then names the array inside it); without it, ``gt_key`` or a
    conventional name finds the ground truth in the scene file. ``nan`` and ``constant_bands`` go to
    :func:`validate_cube`, whose report lands in ``meta["validation"]``.
    """
    if nan not in ("error", "fill"):
        raise FencliError(f"nan must be 'error' or 'fill', got {nan!r}")
    if constant_bands not in ("error", "keep"):
        raise FencliError(f"constant_bands must be 'error' or 'keep', got {constant_bands!r}")
    _layout_perm(layout)
    path = _existing(path)
    fmt = _format_of(path)
    gt_arr, gt_source = None, None
    if fmt == "image":
        if path.suffix.lower() not in GEOTIFF_EXTENSIONS:
            raise FencliError(f"{path.name} is an image: it can be ground truth (--gt), not a cube")
        if layout.lower() != "hwb" or key is not None or (gt_key is not None and gt is None):
            raise FencliError(f"{path.name} is a GeoTIFF holding one cube and no ground truth: "
                              "--layout, --key and --gt-key do not apply")
        cube, meta = _read_geotiff(path)
    elif fmt == "envi":
        if layout.lower() != "hwb":
            raise FencliError("an ENVI header states its own interleave: --layout does not apply")
        if key is not None:
            raise FencliError(f"{path.name} is an ENVI raster with one cube: --key does not apply")
        if gt_key is not None and gt is None:
            raise FencliError("an ENVI raster holds no ground truth: pass the ground-truth file")
        cube, meta = _read_envi(path)
    else:
        af = _open_arrays(path, fmt)
        try:
            cube, gt_arr, gt_source, meta = _read_arrays(af, path, fmt, key, gt, gt_key, layout)
        except BaseException:
            af.close()
            raise
        if not isinstance(cube, LazyCube):
            af.close()  # a memmap or an in-memory array no longer needs the file handle
    if gt is not None:
        gt_arr = read_mask(gt, gt_key)
        gt_source = str(gt)
    if gt_arr is not None and gt_arr.shape != cube.shape[:2]:
        hint = " (transposed? check --layout)" if gt_arr.shape == cube.shape[1::-1] else ""
        raise FencliError(f"ground truth {gt_source} is {gt_arr.shape[0]} x {gt_arr.shape[1]} but the "
                          f"scene is {cube.shape[0]} x {cube.shape[1]}{hint}")
    meta.update(layout=layout.lower(), gt_key=gt_source, dtype=str(np.dtype(cube.dtype)))
    if validate:
        cube, meta["validation"] = validate_cube(cube, nan=nan, constant_bands=constant_bands,
                                                 name=path.name)
    meta["lazy"] = isinstance(cube, (np.memmap, LazyCube))
    return Scene(cube=cube, gt=gt_arr, name=path.stem, path=path, meta=meta)


def _read_arrays(af: _ArrayFile, path: Path, fmt: str, key: str | None, gt: Any,
                 gt_key: str | None, layout: str) -> tuple[Any, np.ndarray | None, str | None, dict]:
    """Cube, embedded ground truth, its name and the metadata of an array file."""
    if fmt == "npy" and key is not None:
        raise FencliError(f"{path.name} holds a single array: --key does not apply")
    name = _pick_cube(af, key, path)
    cube = _load(af, name, path).transpose(_layout_perm(layout))
    gt_arr, gt_source = None, None
    if gt is None:
        gname = _resolve(af.entries, gt_key, path) if gt_key is not None else _find_gt(af)
        if gname is not None:
            gt_arr = _as_mask(_load(af, gname, path), f"{gname!r} in {path.name}")
            if layout.lower().index("w") < layout.lower().index("h"):
                gt_arr = gt_arr.T  # stored with the same axis order as the cube
            gt_source = gname
    attrs = af.attrs(name)
    meta = {"format": af.format, "key": name, "georef": attrs or None,
            "wavelengths": _wavelengths(af, attrs, cube.shape[2])}
    return cube, gt_arr, gt_source, meta


def _read_envi(path: Path) -> tuple[np.memmap, dict]:
    try:
        cube, fields, data = envi.open_envi(path)
    except FencliError:
        raise
    except (OSError, ValueError) as err:
        raise _unreadable(path, err) from None
    georef = {k: fields[k] for k in envi.GEOREF_FIELDS if k in fields}
    wavelengths = envi.float_list(fields["wavelength"]) if "wavelength" in fields else None
    if wavelengths is not None and len(wavelengths) != cube.shape[2]:
        wavelengths = None
    return cube, {"format": "envi", "key": None, "georef": georef or None, "wavelengths": wavelengths,
                  "data_file": str(data), "interleave": fields.get("interleave", "bsq").lower(),
                  "header": fields}


def _read_geotiff(path: Path) -> tuple[np.ndarray, dict]:
    """A GeoTIFF cube via rasterio (:func:`fencli.georef.read_geotiff`): transform and CRS kept."""
    from fencli.georef import read_geotiff

    cube, grid, extra = read_geotiff(path)
    georef = None if grid is None else {"transform": list(grid.transform), "crs": grid.crs}
    return cube, {"format": "geotiff", "key": None, "georef": georef,
                  "wavelengths": extra.get("wavelengths"), "descriptions": extra.get("descriptions")}


def read_mask(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """A separate ground-truth file as an ``H x W`` bool map: nonzero = anomaly.

    Array files (.mat/.npy/.npz/.h5, single-band ENVI): the array ``key``, else one named like
    :data:`GT_NAMES`, else the only 2-D array. Images (.png/.tif via Pillow): grey or palette values
    nonzero; for RGB(A) a pixel is an anomaly when any of R, G, B is nonzero, and a fully transparent
    pixel (alpha 0) never is.
    """
    path = _existing(path)
    fmt = _format_of(path)
    if fmt == "image":
        return _as_mask(_read_image(path), path.name)
    if fmt == "envi":
        cube, _ = _read_envi(path)
        if cube.shape[2] != 1:
            raise FencliError(f"ground truth {path.name} has {cube.shape[2]} bands, not 1")
        return _as_mask(cube[:, :, 0], path.name)
    af = _open_arrays(path, fmt)
    try:
        if key is not None:
            name = _resolve(af.entries, key, path)
        else:
            name = _find_gt(af)
            masks = [n for n, e in af.entries.items() if _mask_like(e)]
            if name is None and len(masks) == 1:
                name = masks[0]
            if name is None:
                listed = ", ".join(f"{n} ({e.describe()})" for n, e in list(af.entries.items())[:20])
                raise FencliError(f"cannot tell which array of {path.name} is the ground truth "
                                  f"(found: {listed or 'nothing'}); name it with --gt-key")
        return _as_mask(_load(af, name, path), f"{name!r} in {path.name}")
    finally:
        af.close()


def _read_image(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise FencliError("reading PNG/TIFF ground truth needs Pillow (pip install pillow)") from None
    try:
        with Image.open(path) as img:
            if img.mode in ("P", "PA"):
                img = img.convert("RGBA")
            mode, arr = img.mode, np.asarray(img)
    except Exception as err:
        raise _unreadable(path, err) from None
    if arr.ndim == 2:
        return arr
    if mode in ("LA", "RGBA", "La", "RGBa"):
        return arr[..., :-1].any(axis=-1) & (arr[..., -1] != 0)
    return arr.any(axis=-1)


# ----------------------------------------------------------------------------- validation


def validate_cube(cube: Any, *, nan: str = "error", constant_bands: str = "error",
                  name: str = "the scene", chunk_bytes: int = 64 << 20) -> tuple[Any, dict]:
    """Check a cube in one chunked pass before any detector sees it; returns (cube, report).

    Errors: fewer than 5 x 5 pixels, NaN/Inf values (unless ``nan="fill"``: each is replaced by its
    band's mean of finite values, which materializes the cube), a constant cube, constant bands
    (unless ``constant_bands="keep"``; they make the covariance singular). The report holds the
    per-band checks' outcome and the global finite ``min``/``max``, so callers can skip a second
    pass for :func:`fencli.preprocess.value_range`.
    """
    if nan not in ("error", "fill") or constant_bands not in ("error", "keep"):
        raise FencliError("nan must be 'error' or 'fill' and constant_bands 'error' or 'keep'")
    if len(cube.shape) != 3:
        raise FencliError(f"{name}: the cube is {len(cube.shape)}-D, not H x W x bands")
    h, w, b = cube.shape
    if h < MIN_SIDE or w < MIN_SIDE or b < 1:
        raise FencliError(f"{name} is {h} x {w} pixels x {b} bands: at least "
                          f"{MIN_SIDE} x {MIN_SIDE} pixels and 1 band are needed")
    floating = np.dtype(cube.dtype).kind == "f"
    lo, hi = np.full(b, np.inf), np.full(b, -np.inf)
    bad_values, bad_pixels = np.zeros(b, np.int64), 0
    rows = row_chunk(w, b, np.dtype(cube.dtype).itemsize, chunk_bytes)
    for _, chunk in iter_rows(open_cube(cube), chunk=rows):  # bounded memory on file-backed cubes too
        clo, chi = chunk.min(axis=(0, 1)), chunk.max(axis=(0, 1))
        if floating and not (np.isfinite(clo).all() and np.isfinite(chi).all()):
            finite = np.isfinite(chunk)  # NaN or Inf somewhere in this block: the slow path
            bad_values += chunk.shape[0] * w - np.count_nonzero(finite, axis=(0, 1))
            bad_pixels += int(np.count_nonzero(~finite.all(axis=2)))
            clo = np.where(finite, chunk, np.inf).min(axis=(0, 1))
            chi = np.where(finite, chunk, -np.inf).max(axis=(0, 1))
        np.minimum(lo, clo, out=lo)
        np.maximum(hi, chi, out=hi)
    report: dict[str, Any] = {"nonfinite_pixels": bad_pixels, "nonfinite_values": int(bad_values.sum()),
                              "filled": False, "constant_bands": [], "notes": []}
    if bad_pixels:
        what = f"{bad_pixels} pixel(s) with NaN/Inf values ({report['nonfinite_values']} values)"
        if nan == "error":
            raise FencliError(f"{name} has {what}; pass --nan fill to replace them by band means")
        empty = np.flatnonzero(bad_values == h * w)
        if empty.size:
            raise FencliError(f"{name}: band(s) {_few(empty)} hold no finite value: "
                              "nothing to fill with")
        cube = _fill_nonfinite(cube, chunk_bytes)
        report["filled"] = True
        report["notes"].append(f"filled {what} with their band means")
    checked_range(float(lo.min()), float(hi.max()), f"the cube of {name}")
    constant = np.flatnonzero(lo == hi)
    if constant.size:
        if constant_bands == "error":
            raise FencliError(f"{name} has {constant.size} constant band(s) "
                              f"(0-based: {_few(constant)}), which make the covariance singular; pass --constant-bands keep or "
                              "select other bands")
        report["constant_bands"] = constant.tolist()
        report["notes"].append(f"kept {constant.size} constant band(s): {_few(constant)}")
    report["min"], report["max"] = float(lo.min()), float(hi.max())
    return cube, report


def _few(indices: np.ndarray, n: int = 5) -> str:
    shown = ", ".join(map(str, indices[:n].tolist()))
    return shown + (f" and {indices.size - n} more" if indices.size > n else "")


def _fill_nonfinite(cube: Any, chunk_bytes: int) -> np.ndarray:
    """An in-memory copy with each NaN/Inf replaced by its band's mean of finite values."""
    out = np.array(cube)  # never write into the user's file through a memmap
    total, count = np.zeros(out.shape[2]), np.zeros(out.shape[2], np.int64)
    rows = row_chunk(out.shape[1], out.shape[2], out.dtype.itemsize, chunk_bytes)
    for _, chunk in iter_rows(open_cube(out), chunk=rows):
        finite = np.isfinite(chunk)
        total += np.where(finite, chunk, 0).sum(axis=(0, 1), dtype=np.float64)
        count += np.count_nonzero(finite, axis=(0, 1))
    mask = ~np.isfinite(out)
    out[mask] = np.broadcast_to((total / count).astype(out.dtype), out.shape)[mask]
    return out


# ----------------------------------------------------------------------------- writing


TEMP_MARK = ".tmp"  # temp files are ``.<name>.<pid>.<random>.tmp<suffix>`` beside the target


@contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (same extension) and publish it as ``path`` on success.

    Refuses an existing target unless ``force``. Without ``force`` the temp file is published with
    a hard link, which fails if another process created the target meanwhile: of two concurrent
    writers one wins and the other gets a clear error, never a mix; with ``force`` the last
    rename wins, whole. On any failure (a full disk included) the temp file is removed and the
    target left untouched. A process killed mid-write leaves only its temp file, named with its pid,
    which the next write to the same target removes.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise FencliError(f"{path} is a folder; give a file name")
    if path.exists() and not force:
        raise FencliError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise FencliError(f"cannot write {path}: folder {path.parent} does not exist")
    import tempfile

    remove_stale_temps(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.",
                                    suffix=f"{TEMP_MARK}{path.suffix}", dir=path.parent)
    except OSError as err:
        raise FencliError(f"cannot write in {path.parent}: {err.strerror or err}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            yield tmp
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
            os.chmod(tmp, mode)  # mkstemp makes 0600; give the result the usual permissions
            _publish(tmp, path, force)
        except OSError as err:  # ENOSPC, EIO, EDQUOT...: one line, nothing left behind
            raise FencliError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _publish(tmp: Path, path: Path, force: bool) -> None:
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and never clobbers: EEXIST if a concurrent run got there first
    except FileExistsError:
        raise FencliError(f"{path} already exists (written meanwhile by another run); "
                          "pass --force to overwrite it") from None
    except OSError:  # a file system without hard links: the check above is the best we have
        os.replace(tmp, path)


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete temp files of ``path`` left by writers that no longer run (killed mid-write)."""
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_MARK}{glob.escape(path.suffix)}"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_array(path: str | os.PathLike, array: Any, *, force: bool = False, key: str = "data",
                meta: dict | None = None) -> Path:
    """Write an array (a cube, a score map...) in the format its extension names; atomic.

    ``.npy``; ``.mat`` (v5, or v7.3 through h5py above 2 GB, which MATLAB reads the same way);
    ``.h5``/``.hdf5`` (dataset ``key``; ``meta["georef"]`` and wavelengths as attributes);
    ``.hdr``/``.img`` ENVI BSQ float32 pair (with ``map info``, ``coordinate system string`` and
    ``wavelength`` from ``meta``).
    """
    path = Path(path).expanduser()
    ext = path.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        raise FencliError(f"cannot write {path.name}: unknown extension {ext or '(none)'}; "
                          f"supported: {', '.join(WRITE_EXTENSIONS)}")
    if ext in (".hdr", ".img"):
        write_envi_scene(path, array, dtype=np.float32, meta=meta, force=force)
        return path
    arr = np.asarray(array)
    with atomic_path(path, force) as tmp:
        if ext == ".npy":
            with open(tmp, "wb") as out:
                np.save(out, arr, allow_pickle=False)
        elif ext == ".mat":
            _write_mat(tmp, arr, key)
        else:
            _write_h5(tmp, arr, key, meta)
    return path


def _write_mat(tmp: Path, arr: np.ndarray, key: str) -> None:
    if arr.nbytes <= _MAT_V5_LIMIT:
        import scipy.io

        with open(tmp, "wb") as out:
            scipy.io.savemat(out, {key: arr})
        return
    _write_mat73(tmp, arr, key)


def _write_mat73(tmp: Path, arr: np.ndarray, key: str) -> None:
    """MATLAB v7.3: HDF5 behind a 512-byte MAT header, arrays stored with their axes reversed."""
    import h5py

    cls = _MATLAB_CLASSES.get(arr.dtype.str[1:])
    if cls is None:
        raise FencliError(f"MATLAB cannot store {arr.dtype} arrays")
    with h5py.File(tmp, "w", userblock_size=512) as f:
        dtype = np.uint8 if cls == "logical" else arr.dtype
        ds = f.create_dataset(key, shape=arr.shape[::-1], dtype=dtype)
        ds.attrs["MATLAB_class"] = np.bytes_(cls)
        if cls == "logical":
            ds.attrs["MATLAB_int_decode"] = np.int32(1)
        if arr.ndim < 2:
            ds[...] = arr
        else:
            for i in range(arr.shape[-1]):  # one (transposed) slab at a time: no full-size copy
                ds[i] = arr[..., i].T
    text = (f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: "
            f"{time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 .").ljust(116)
    with open(tmp, "r+b") as out:
        out.write(text.encode("ascii") + bytes(8) + b"\x00\x02IM")


def _write_h5(tmp: Path, arr: np.ndarray, key: str, meta: dict | None) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        ds = f.create_dataset(key, data=arr)  # contiguous: read back as a memmap
        meta = meta or {}
        for name, value in (meta.get("georef") or {}).items():
            if isinstance(value, dict):
                value = json.dumps(value)
            if value is not None:
                ds.attrs[name] = np.asarray(value) if isinstance(value, (list, tuple)) else value
        if meta.get("wavelengths") is not None:
            ds.attrs["wavelength"] = np.asarray(meta["wavelengths"], dtype=np.float64)


def write_envi_scene(path: str | os.PathLike, cube: Any, *, interleave: str = "bsq",
                     dtype: Any = None, byte_order: int | None = None, header_offset: int = 0,
                     meta: dict | None = None, force: bool = False) -> tuple[Path, Path]:
    """Write an ENVI ``.hdr`` + data pair (``x.hdr`` / ``x.img``) atomically; returns both paths.

    ``cube`` is ``H x W x B`` (or ``H x W``: one band). ``dtype`` defaults to the cube's;
    ``byte_order`` 1 writes big-endian; ``header_offset`` pads the data file's start with zeros.
    """
    path = Path(path).expanduser()
    hdr = path if path.suffix.lower() == ".hdr" else path.with_suffix(".hdr")
    data = path.with_suffix(".img") if path.suffix.lower() == ".hdr" else path
    arr = cube[:, :, None] if len(cube.shape) == 2 else cube
    if len(arr.shape) != 3:
        raise FencliError(f"ENVI stores H x W x bands rasters, not {len(cube.shape)}-D arrays")
    dt = np.dtype(dtype if dtype is not None else arr.dtype)
    if byte_order is not None:
        dt = dt.newbyteorder("<" if byte_order == 0 else ">")
    interleave = interleave.lower()
    text = envi.format_header(arr.shape, dt, interleave=interleave, header_offset=header_offset,
                              meta=meta)
    for target in (hdr, data):
        if target.exists() and not force:
            raise FencliError(f"{target} already exists; pass --force to overwrite it")
    with atomic_path(hdr, force) as tmp_hdr, atomic_path(data, force) as tmp_data:
        with open(tmp_data, "wb") as out:
            out.write(bytes(header_offset))
            envi.write_data(out, arr, dt, interleave)
        tmp_hdr.write_text(text)
    return hdr, data
