"""Reading scenes, one facade over :mod:`fencli.formats`: every command gets the same ``H x W x B``
cube (lazy where the format allows), ground truth, metadata and one-line errors whatever the file."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fencli.errors import FencliError
from fencli.formats import envi, format_of, geotiff, image
from fencli.formats.base import ArrayFile, Entry, unreadable
from fencli.formats.hdf5 import LazyCube
from fencli.nodata import nodata_rows as _nodata_rows, values_in as _values_in
from fencli.preprocess import check_size, checked_range, nonfinite_error
from fencli.tiles import iter_rows, open_cube

GT_NAMES = ("map", "gt", "groundtruth", "ground_truth", "mask")  # priority order when several exist
WAVELENGTH_NAMES = ("wavelength", "wavelengths")
NODATA_ATTRS = ("_fillvalue", "missing_value", "nodata", "no_data", "nodata_value")  # HDF5/netCDF, case-blind
OVERFLOW = 1e30  # |x| above this: squares and cross-products of a few million pixels leave float64's range
FLT_MAX, DBL_MAX = float(np.finfo(np.float32).max), float(np.finfo(np.float64).max)
# --nodata auto: these values, held by a pixel in EVERY band (B >= 2), mark nodata; no calibrated sensor
# records one of them in all bands of a pixel (negative fill values, or the extreme float values)
AUTO_FILLS = (-9999.0, -32768.0, -32767.0, FLT_MAX, -FLT_MAX, DBL_MAX, -DBL_MAX)


@dataclass
class Scene:
    """A hyperspectral scene: ``cube`` is ``H x W x B`` (native dtype, possibly lazy), ``gt`` bool."""

    cube: np.ndarray = field(repr=False)
    gt: np.ndarray | None = field(repr=False)
    name: str
    path: Path | None  # None: an array handed to the API
    meta: dict = field(default_factory=dict)
    # the values that mark nodata pixels: the file's declaration (ENVI ``data ignore value``, GeoTIFF
    # nodata (read as NaN), HDF5/netCDF ``_FillValue``/``missing_value``/``nodata``) and ``--nodata``;
    # NaN means "NaN or +-Inf". :func:`nodata_mask` turns them into the H x W mask.
    nodata: list[float] = field(default_factory=list)
    # H x W bool, False where the ground truth is the format's declared nodata (left out of the
    # metrics: ``fencli.metrics`` ``valid=``); None when every ground-truth pixel is valid.
    gt_valid: np.ndarray | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """How messages name the scene: its file name, or "the scene" for an array."""
        return self.path.name if self.path is not None else self.name

    def engine_source(self) -> Any:
        """What :mod:`fencli.engine` reads: a ``.npy`` scene as read is read by window from its file
        (and travels to Dask workers as its path); a cube validation cleaned, stored in another axis
        order or read from another format is the array itself."""
        as_read = isinstance(self.cube, np.memmap) and self.meta.get("layout", "hwb") == "hwb"
        from_npy = self.path is not None and self.path.suffix.lower() == ".npy"
        return self.path if from_npy and as_read else self.cube


def _existing(path: str | os.PathLike) -> Path:
    """``path`` when it names a regular file; else one line saying what it is (a FIFO or a device
    would block or never end, a symlink loop is not "no such file")."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise FencliError(f"{path}: symbolic link loop (the link never reaches a file)") from None
        if os.path.islink(path):
            raise FencliError(f"{path}: broken symbolic link (to {os.readlink(path)}, which does not exist)") from None
        if err.errno in (errno.EACCES, errno.EPERM):
            raise FencliError(f"{path}: permission denied") from None
        raise FencliError(f"{path}: no such file") from None
    if stat.S_ISDIR(st.st_mode):
        raise FencliError(f"{path} is a folder, not a scene file")
    if not stat.S_ISREG(st.st_mode):
        raise FencliError(f"{path} is {_file_kind(st.st_mode)}, not a regular file: "
                          "fencli reads scenes and ground truth from files only")
    return path


def _file_kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _reading(path: Path, read: Callable[[], Any]) -> Any:
    """``read()``, with any library's own exception about a bad file as one FencliError line."""
    try:
        return read()
    except FencliError:
        raise
    except Exception as err:
        raise unreadable(path, err) from None


def _basename(name: str) -> str:
    return name.rsplit("/", 1)[-1].lower()


def _listing(af: ArrayFile) -> str:
    """The file's first 20 arrays with shape and dtype, for the message that asks the user to pick."""
    return ", ".join(f"{n} ({e.describe()})" for n, e in list(af.entries.items())[:20])


def _resolve(af: ArrayFile, key: str, path: Path) -> str:
    """The entry ``key`` names: exact, without a leading '/', or a unique case-blind base name."""
    if key in af.entries:
        return key
    if key.lstrip("/") in af.entries:
        return key.lstrip("/")
    same = [n for n in af.entries if _basename(n) == key.lower().lstrip("/")]
    if len(same) == 1:
        return same[0]
    raise FencliError(f"{path.name} has no array {key!r}; available: {_listing(af) or 'none'}")


def _pick_cube(af: ArrayFile, key: str | None, path: Path) -> str:
    """The named array, else the largest 3-D numeric one (a tie is an error, not a guess)."""
    if key is not None:
        name = _resolve(af, key, path)
        entry = af.entries[name]
        if len(entry.shape) != 3 or not entry.numeric:
            raise FencliError(f"{name!r} in {path.name} is {entry.describe()}, not a 3-D numeric cube")
        return name
    cands = sorted((n for n, e in af.entries.items() if len(e.shape) == 3 and e.numeric),
                   key=lambda n: -af.entries[n].size)
    if not cands:
        cplx = [n for n, e in af.entries.items() if len(e.shape) == 3 and e.dtype.kind == "c"]
        if cplx:
            raise FencliError(f"{path.name} holds no real 3-D cube: {cplx[0]!r} "
                              f"({af.entries[cplx[0]].describe()}) is complex; save its real part or "
                              f"magnitude as the cube (found: {_listing(af)})")
        raise FencliError(f"{path.name} holds no 3-D numeric array (found: {_listing(af) or 'nothing'})")
    if len(cands) > 1 and af.entries[cands[0]].size == af.entries[cands[1]].size:
        raise FencliError(f"{path.name} holds two largest 3-D arrays of equal size, {cands[0]!r} and "
                          f"{cands[1]!r}: name the cube with --key")
    return cands[0]


def _mask_like(entry: Entry) -> bool:
    return len(entry.shape) == 2 or (len(entry.shape) == 3 and 1 in entry.shape)


def _gt_name(af: ArrayFile, key: str | None, path: Path, sole: bool = False) -> str | None:
    """The ground-truth array: the one ``key`` names, else the first of :data:`GT_NAMES` present,
    else with ``sole`` (a separate ground-truth file) the only mask-like array."""
    if key is not None:
        return _resolve(af, key, path)
    masks = [n for n, e in af.entries.items() if _mask_like(e)]
    by_name = {_basename(n): n for n in masks}
    found = next((by_name[g] for g in GT_NAMES if g in by_name), None)
    return masks[0] if found is None and sole and len(masks) == 1 else found


def _load_mask(af: ArrayFile, name: str, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    return as_truth(_reading(path, af.entries[name].load), f"{name!r} in {path.name}",
                     _declared_nodata(af.attrs(name)))


def as_truth(arr: Any, source: str, nodata: list[float] = ()) -> tuple[np.ndarray, np.ndarray | None]:
    """(anomaly mask, valid mask or None) of a ground-truth array, its values checked.

    A ground truth is binary: 0 and ONE positive value (1, or 255 in an 8-bit image...). The values
    the format declares nodata are left out (``valid`` False there, None when there are none);
    anything else (NaN/Inf, a negative value, a third value such as 255 beside 0 and 1) is a
    one-line error, never an anomaly.
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and 1 in arr.shape:
        arr = arr.squeeze(axis=arr.shape.index(1))
    if arr.ndim != 2:
        raise FencliError(f"ground truth {source} is {' x '.join(map(str, arr.shape))}, not a 2-D map")
    if arr.dtype.kind not in "biuf":
        raise FencliError(f"ground truth {source} holds {arr.dtype} values, not numbers")
    if arr.dtype.kind == "b":
        return arr, None
    invalid = None
    if nodata:
        kept, nonfinite = _values_in(arr.dtype, list(nodata))
        invalid = _nodata_rows(arr[:, :, None], kept, nonfinite)
        invalid = invalid if invalid.any() else None
    checked = arr if invalid is None else arr[~invalid]
    finite = np.isfinite(checked) if arr.dtype.kind == "f" else None
    values = np.unique(checked if finite is None else checked[finite])
    positive = values[values > 0]
    bad = values[values < 0].tolist() + positive[1:].tolist()
    if finite is not None and not finite.all():
        bad = ["NaN/Inf"] + bad
    if bad:
        shown = ", ".join(v if isinstance(v, str) else f"{v:g}" for v in bad[:5]) + (" ..." if len(bad) > 5 else "")
        one = f"{positive[0]:g}" if positive.size else "1"
        raise FencliError(f"ground truth {source} holds values other than 0 and {one} ({shown}): save it "
                          "as a 0/1 map, or declare its nodata value (HDF5 _FillValue or nodata attribute, "
                          "ENVI data ignore value, GeoTIFF nodata) to leave those pixels out")
    mask = arr > 0 if finite is None else np.nan_to_num(arr, nan=0.0) > 0
    if invalid is not None:
        mask &= ~invalid
        return mask, ~invalid
    return mask, None


def _wavelengths(af: ArrayFile, attrs: dict, bands: int) -> list[float] | None:
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


def _layout_perm(layout: str) -> tuple[int, int, int]:
    layout = layout.lower()
    if sorted(layout) != ["b", "h", "w"]:
        raise FencliError(f"layout {layout!r} is not a permutation of h, w, b (e.g. hwb, bhw, whb)")
    return tuple(layout.index(c) for c in "hwb")


def read_scene(path: str | os.PathLike, *, key: str | None = None,
               gt: str | os.PathLike | None = None, gt_key: str | None = None,
               layout: str = "hwb", nan: str = "error", constant_bands: str = "error",
               validate: bool = True, nodata: Any = None) -> Scene:
    """Read a scene as ``H x W x B`` (lazy where the format allows) plus its optional ground truth.

    ``layout`` names the stored axis order (``"bhw"`` for bands-first files). ``gt`` is a separate
    ground-truth file (``gt_key`` then names the array inside it); without it, ``gt_key`` or a
    conventional name finds the ground truth in the scene file. ``nan`` and ``constant_bands`` go to
    :func:`validate_cube`, whose report lands in ``meta["validation"]`` (``validate=False``: the
    checks are left to the caller, as :func:`fencli.detect` makes them).

    Returns a :class:`Scene`: ``cube`` (``H x W x B``, native dtype, a memmap or lazy dataset where
    the format allows), ``gt`` (``H x W`` bool or None), ``name``, ``path``, ``meta`` (format, key,
    wavelengths, georeferencing).

    ``Scene.nodata`` holds the nodata values the file declares plus ``nodata`` (``--nodata``: numbers,
    ``nan`` for NaN/Inf pixels, or ``"auto"``: :func:`auto_nodata`). Validation leaves all those
    pixels (declared or given) out of its checks and range, as the statistics do.
    """
    if nan not in ("error", "fill"):
        raise FencliError(f"nan must be 'error' or 'fill', got {nan!r}")
    if constant_bands not in ("error", "keep"):
        raise FencliError(f"constant_bands must be 'error' or 'keep', got {constant_bands!r}")
    _layout_perm(layout)
    path = _existing(path)
    fmt = format_of(path)
    gt_arr, gt_source = None, None
    if fmt is image:
        raise FencliError(f"{path.name} is an image: it can be ground truth (--gt), not a cube")
    if fmt is geotiff:
        if layout.lower() != "hwb" or key is not None or (gt_key is not None and gt is None):
            raise FencliError(f"{path.name} is a GeoTIFF holding one cube and no ground truth: "
                              "--layout, --key and --gt-key do not apply")
        cube, meta = geotiff.read_cube(path)
    elif fmt is envi:
        if layout.lower() != "hwb":
            raise FencliError("an ENVI header states its own interleave: --layout does not apply")
        if key is not None:
            raise FencliError(f"{path.name} is an ENVI raster with one cube: --key does not apply")
        if gt_key is not None and gt is None:
            raise FencliError("an ENVI raster holds no ground truth: pass the ground-truth file")
        cube, meta = envi.read_cube(path)
    else:
        af = _reading(path, partial(fmt.open_arrays, path))
        try:
            cube, gt_arr, gt_source, meta = _read_arrays(af, path, key, gt, gt_key, layout)
        except BaseException:
            af.close()
            raise
        if not isinstance(cube, LazyCube):
            af.close()  # a memmap or an in-memory array no longer needs the file handle
    if gt is not None:
        gt_arr = read_truth(gt, gt_key)
        gt_source = str(gt)
    gt_arr, gt_valid = gt_arr if gt_arr is not None else (None, None)
    if gt_arr is not None and gt_arr.shape != cube.shape[:2]:
        hint = " (transposed? check --layout)" if gt_arr.shape == cube.shape[1::-1] else ""
        raise FencliError(f"ground truth {gt_source} is {gt_arr.shape[0]} x {gt_arr.shape[1]} but the "
                          f"scene is {cube.shape[0]} x {cube.shape[1]}{hint}")
    meta.update(layout=layout.lower(), gt_key=gt_source, dtype=str(np.dtype(cube.dtype)),
                gt_nodata_pixels=0 if gt_valid is None else int((~gt_valid).sum()))
    values = merged_nodata(meta.pop("nodata", None) or [], nodata, cube)
    meta["nodata"] = values
    if validate:
        cube, meta["validation"] = validate_cube(cube, nan=nan, constant_bands=constant_bands,
                                                 name=path.name, nodata=values)
    meta["lazy"] = isinstance(cube, (np.memmap, LazyCube))
    return Scene(cube=cube, gt=gt_arr, name=path.stem, path=path, meta=meta, nodata=values, gt_valid=gt_valid)


def parse_nodata(values: Any) -> list[float | str] | None:
    """``--nodata`` as given (repeatable): numbers, ``nan`` (NaN/Inf pixels) or ``auto``; None when absent."""
    if values is None:
        return None
    out: list[float | str] = []
    for v in [values] if isinstance(values, (str, float, int)) else values:
        text = str(v).strip().lower()
        if text == "auto":
            out.append("auto")
            continue
        try:
            out.append(float(text))
        except ValueError:
            raise FencliError(f"--nodata takes a number, nan or auto, not {v!r}") from None
    return out


def merged_nodata(declared: list[float], given: Any, cube: Any) -> list[float]:
    """The declared values, then ``given`` (``"auto"`` expanded by :func:`auto_nodata`), once each."""
    out: list[float] = []
    for v in [*declared, *(parse_nodata(given) or [])]:
        for value in (auto_nodata(cube) if v == "auto" else [float(v)]):
            if not any(_same_value(value, o) for o in out):
                out.append(value)
    return out


def _same_value(a: float, b: float) -> bool:
    return a == b or (np.isnan(a) and np.isnan(b))


def nodata_mask(cube: Any, nodata: Any, *, chunk_bytes: int = 64 << 20) -> np.ndarray:
    """``H x W`` bool, True at nodata pixels: any band equals one of ``nodata`` (compared in the cube's
    dtype, so ``-9999`` matches a float32 ``-9999.0``; values the dtype cannot hold never match), or,
    when NaN is among them, any band is NaN or +-Inf.

    What it means: these pixels are not measurements. The detectors' statistics (GRX's mean and
    covariance, SLRX's blocks, LRX's windows) and the FEN's range leave them out, they are scored
    NaN and written as the output's nodata, and the metrics ignore them (``valid=~mask``).

    One pass over whole-row blocks of at most ``chunk_bytes``: memmaps, lazy HDF5 cubes and
    :class:`fencli.tiles.Cube` readers are never loaded whole; the memory is the mask and one block.
    """
    values = [float(v) for v in (nodata or [])]
    h, w = cube.shape[:2]
    out = np.zeros((h, w), dtype=bool)
    if not values:
        return out
    kept, nonfinite = _values_in(cube.dtype, values)
    if not kept and not nonfinite:
        return out
    row = 0
    for chunk in iter_rows(open_cube(cube), chunk_bytes):
        out[row:row + chunk.shape[0]] = _nodata_rows(chunk, kept, nonfinite)
        row += chunk.shape[0]
    return out


def valid_pixels(scene: Scene, *, chunk_bytes: int = 64 << 20) -> np.ndarray | None:
    """``H x W`` bool of the pixels the metrics count: not nodata in the cube (:func:`nodata_mask`
    of ``scene.nodata``) and not nodata in the ground truth (``scene.gt_valid``); None when every
    pixel counts. What ``fencli.metrics`` takes as ``valid=``."""
    valid = None if scene.gt_valid is None else scene.gt_valid.copy()
    if scene.nodata:
        cube_valid = ~nodata_mask(scene.cube, scene.nodata, chunk_bytes=chunk_bytes)
        valid = cube_valid if valid is None else valid & cube_valid
    return None if valid is None or valid.all() else valid


def auto_nodata(cube: Any, *, chunk_bytes: int = 64 << 20) -> list[float]:
    """``--nodata auto``: the values of :data:`AUTO_FILLS` that some pixel holds in every one of its
    bands (a cube of one band finds none: one value cannot tell a fill from a measurement). One
    chunked pass."""
    if cube.shape[2] < 2 or np.dtype(cube.dtype).kind not in "iuf":
        return []
    kept, _ = _values_in(cube.dtype, list(AUTO_FILLS))
    found: list[Any] = []
    for chunk in iter_rows(open_cube(cube), chunk_bytes):
        flat = (chunk == chunk[:, :, :1]).all(axis=2)  # pixels with one value in every band
        if flat.any():
            first = chunk[:, :, 0][flat]
            found += [v for v in kept if v not in found and (first == v).any()]
    return [float(v) for v in found]


def _read_arrays(af: ArrayFile, path: Path, key: str | None, gt: Any,
                 gt_key: str | None, layout: str) -> tuple[Any, np.ndarray | None, str | None, dict]:
    """Cube, embedded ground truth, its name and the metadata of an array file."""
    if af.format == "npy" and key is not None:
        raise FencliError(f"{path.name} holds a single array: --key does not apply")
    name = _pick_cube(af, key, path)
    cube = _reading(path, af.entries[name].load).transpose(_layout_perm(layout))
    gname = _gt_name(af, gt_key, path) if gt is None else None
    gt_arr = None if gname is None else _load_mask(af, gname, path)
    if gt_arr is not None and layout.lower().index("w") < layout.lower().index("h"):
        gt_arr = tuple(None if a is None else a.T for a in gt_arr)  # stored in the cube's axis order
    attrs = af.attrs(name)
    meta = {"format": af.format, "key": name, "georef": attrs or None,
            "wavelengths": _wavelengths(af, attrs, cube.shape[2]), "nodata": _declared_nodata(attrs)}
    return cube, gt_arr, gname, meta


def _declared_nodata(attrs: dict) -> list[float]:
    """HDF5/netCDF nodata attributes (``_FillValue``, ``missing_value``, ``nodata``...) as floats."""
    out: list[float] = []
    for key, value in attrs.items():
        if key.lower() in NODATA_ATTRS:
            for v in np.ravel(np.asarray(value)):
                try:
                    f = float(v)
                except (TypeError, ValueError):
                    continue
                if not any(_same_value(f, o) for o in out):
                    out.append(f)
    return out


def read_mask(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """A separate ground-truth file as an ``H x W`` bool map (see :func:`read_truth`; its declared
    nodata pixels are False here)."""
    return read_truth(path, key)[0]


def read_truth(path: str | os.PathLike, key: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A separate ground-truth file as (``H x W`` bool anomaly map, valid map or None): the positive
    value = anomaly; values the format declares nodata are not valid; any other value is an error.

    Array files (.mat/.npy/.npz/.h5, single-band ENVI): the array ``key``, else one named like
    :data:`GT_NAMES`, else the only 2-D array. Images (.png/.tif via Pillow): grey or palette values
    nonzero; for RGB(A) a pixel is an anomaly when any of R, G, B is nonzero, and a fully transparent
    pixel (alpha 0) never is.
    """
    path = _existing(path)
    fmt = format_of(path)
    if fmt is geotiff and (declared := _geotiff_truth(path)) is not None:
        return as_truth(declared, path.name, [float("nan")])  # its nodata pixels read as NaN
    if fmt in (image, geotiff):
        return as_truth(image.read_image(path), path.name)
    if fmt is envi:
        cube, meta = envi.read_cube(path)
        if cube.shape[2] != 1:
            raise FencliError(f"ground truth {path.name} has {cube.shape[2]} bands, not 1")
        return as_truth(cube[:, :, 0], path.name, meta.get("nodata") or [])
    af = _reading(path, partial(fmt.open_arrays, path))
    try:
        name = _gt_name(af, key, path, sole=True)
        if name is None:
            raise FencliError(f"cannot tell which array of {path.name} is the ground truth "
                              f"(found: {_listing(af) or 'nothing'}); name it with --gt-key")
        return _load_mask(af, name, path)
    finally:
        af.close()


def _geotiff_truth(path: Path) -> np.ndarray | None:
    """A one-band GeoTIFF ground truth that declares nodata, read with it as NaN; else None (Pillow
    reads it, as any image)."""
    try:
        import rasterio  # noqa: F401  (the gis extra; without it Pillow reads the image)
    except ImportError:
        return None
    cube, _, meta = _reading(path, partial(geotiff.read_geotiff, path))
    if meta.get("nodata") is None or cube.shape[2] != 1:
        return None
    return cube[:, :, 0]


def validate_cube(cube: Any, *, nan: str = "error", constant_bands: str = "error",
                  name: str = "the scene", chunk_bytes: int = 64 << 20,
                  nodata: Any = None, bands: int | None = None) -> tuple[Any, dict]:
    """Check a cube in one chunked pass before any detector sees it; returns (cube, report).

    ``bands``: check only the leading bands a run keeps (its nodata pixels, NaN and range are those
    the engine will meet); a filled cube then holds those bands only.

    Errors: fewer than 5 x 5 pixels, NaN/Inf values (unless ``nan="fill"``: each is replaced by its
    band's mean of finite values, which materializes the cube), a constant cube, constant bands
    (unless ``constant_bands="keep"``; they make the covariance singular). The report holds the
    per-band checks' outcome, the global finite ``min``/``max`` and the per-band ``band_min``/
    ``band_max``, so callers can skip a second pass for the value range (:func:`fencli.engine.run`'s
    ``band_range``).

    Values beyond +-1e30 (FLT_MAX, DBL_MAX and the like), whose squares overflow the float64
    statistics into an all-NaN or all-zero map, are a one-line error naming ``--nodata``. With
    ``nodata`` (values as for :func:`nodata_mask`) those pixels are left out of every check, the
    range included, and counted in ``nodata_pixels``; a cube with nothing else is an error.
    """
    if nan not in ("error", "fill") or constant_bands not in ("error", "keep"):
        raise FencliError("nan must be 'error' or 'fill' and constant_bands 'error' or 'keep'")
    if len(cube.shape) != 3:
        raise FencliError(f"{name}: the cube is {len(cube.shape)}-D, not H x W x bands")
    check_size(cube.shape, name)
    h, w, full = cube.shape
    b = full if bands is None else max(1, min(bands, full))
    floating = np.dtype(cube.dtype).kind == "f"
    lo, hi = np.full(b, np.inf), np.full(b, -np.inf)
    bad_values, bad_pixels = np.zeros(b, np.int64), 0
    values = [float(v) for v in (nodata or [])]
    kept, nd_nonfinite = _values_in(cube.dtype, values)
    nodata_pixels = 0
    for chunk in iter_rows(open_cube(cube), chunk_bytes):  # bounded memory on file-backed cubes too
        if b < full:
            chunk = chunk[:, :, :b]
        if kept or nd_nonfinite:
            nd = _nodata_rows(chunk, kept, nd_nonfinite)
            if nd.any():
                nodata_pixels += int(nd.sum())
                chunk = chunk[~nd][None]  # the valid pixels only (1 x n x b): the checks below
                if chunk.shape[1] == 0:
                    continue
        clo, chi = chunk.min(axis=(0, 1)), chunk.max(axis=(0, 1))
        if floating and not (np.isfinite(clo).all() and np.isfinite(chi).all()):
            finite = np.isfinite(chunk)  # NaN or Inf somewhere in this block: the slow path
            bad_values += chunk.shape[0] * chunk.shape[1] - np.count_nonzero(finite, axis=(0, 1))
            bad_pixels += int(np.count_nonzero(~finite.all(axis=2)))
            clo = np.where(finite, chunk, np.inf).min(axis=(0, 1))
            chi = np.where(finite, chunk, -np.inf).max(axis=(0, 1))
        np.minimum(lo, clo, out=lo)
        np.maximum(hi, chi, out=hi)
    report: dict[str, Any] = {"nonfinite_pixels": bad_pixels, "nonfinite_values": int(bad_values.sum()),
                              "filled": False, "constant_bands": [], "notes": [],
                              "nodata": values, "nodata_pixels": nodata_pixels,
                              "checked": {"nan": nan, "constant_bands": constant_bands, "bands": b}}
    if nodata_pixels == h * w:
        raise FencliError(f"{name}: every pixel is nodata ({_values_text(values)}): nothing to detect")
    _refuse_overflow(lo, hi, name, values)
    if bad_pixels:
        what = f"{bad_pixels} pixel(s) with NaN/Inf values ({report['nonfinite_values']} values)"
        if nan == "error":
            raise nonfinite_error(name, what)
        empty = np.flatnonzero(bad_values == h * w - nodata_pixels)
        if empty.size:
            raise FencliError(f"{name}: band(s) {_few(empty)} hold no finite value: "
                              "nothing to fill with")
        cube = _fill_nonfinite(cube if b == full else np.asarray(cube)[:, :, :b], h * w - nodata_pixels - bad_values,
                               chunk_bytes, kept)
        report["filled"] = True
        report["notes"].append(f"filled {what} with their band means")
    report["min"], report["max"] = checked_range(float(lo.min()), float(hi.max()), f"the cube of {name}")
    constant = np.flatnonzero(lo == hi)
    if constant.size:
        if constant_bands == "error":
            raise FencliError(f"{name} has {constant.size} constant band(s) "
                              f"(0-based: {_few(constant)}), which make the covariance singular; pass --constant-bands keep or "
                              "select other bands")
        report["constant_bands"] = constant.tolist()
        report["notes"].append(f"kept {constant.size} constant band(s): {_few(constant)}")
    report["band_min"], report["band_max"] = lo.tolist(), hi.tolist()  # the engine's range of any leading bands
    return cube, report


def _values_text(values: list[float]) -> str:
    return ", ".join("NaN/Inf" if np.isnan(v) else f"{v:.9g}" for v in values) or "none"


def _refuse_overflow(lo: np.ndarray, hi: np.ndarray, name: str, nodata: list[float]) -> None:
    """One line naming ``--nodata`` for values float64 statistics cannot take (|x| > 1e30: FLT_MAX,
    DBL_MAX...), instead of overflow warnings and a silent AUC of 0.5. Only finite values reach here
    (NaN/Inf follow ``--nan``); ``lo``/``hi`` are per band, over the valid pixels."""
    finite_lo, finite_hi = lo[np.isfinite(lo)], hi[np.isfinite(hi)]
    if not finite_lo.size:
        return
    low, high = float(finite_lo.min()), float(finite_hi.max())
    worst = high if abs(high) >= abs(low) else low
    if abs(worst) <= OVERFLOW:
        return
    label = next((f" ({t})" for v, t in ((FLT_MAX, "FLT_MAX"), (-FLT_MAX, "-FLT_MAX"), (DBL_MAX, "DBL_MAX"),
                                          (-DBL_MAX, "-DBL_MAX")) if worst == v), "")
    declared = f" (nodata now: {_values_text(nodata)})" if nodata else ""
    raise FencliError(f"{name} holds {worst:.9g}{label}, beyond what float64 statistics take (|x| > 1e30)"
                      f"{declared}: if it marks missing pixels pass --nodata {worst!r}, else rescale the data")


def _few(indices: np.ndarray, n: int = 5) -> str:
    shown = ", ".join(map(str, indices[:n].tolist()))
    return shown + (f" and {indices.size - n} more" if indices.size > n else "")


def _fill_nonfinite(cube: Any, n_finite: np.ndarray, chunk_bytes: int, nodata: list[Any] = ()) -> np.ndarray:
    """An in-memory copy with each NaN/Inf replaced by its band's mean of its ``n_finite`` finite values
    (pixels holding one of the ``nodata`` values, already cast to the dtype, count for nothing)."""
    out = np.array(cube)  # never write into the user's file through a memmap
    total = np.zeros(out.shape[2])
    for chunk in iter_rows(open_cube(out), chunk_bytes):
        keep = np.isfinite(chunk)
        if nodata:
            keep &= ~_nodata_rows(chunk, list(nodata), False)[:, :, None]
        total += np.where(keep, chunk, 0).sum(axis=(0, 1), dtype=np.float64)
    np.copyto(out, (total / n_finite).astype(out.dtype), where=~np.isfinite(out))
    return out
