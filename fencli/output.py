"""Writing, apart from reading so that neither imports the other: every file fencli writes appears
whole under its final name or not at all (:func:`atomic_path`)."""

from __future__ import annotations

import csv
import glob
import io
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fencli.errors import FencliError
from fencli.formats import envi, geotiff, mat
from fencli.georef import GeoRef, envi_fields

WRITE_EXTENSIONS = (".npy", ".mat", ".h5", ".hdf5", ".hdr", ".img")
NO_GEOREF = (".npy", ".npz", ".mat")  # formats with no place fencli puts a map grid in
_MAT_V5_LIMIT = 2**31 - 2**16  # v5 stores byte counts in 32 bits; MATLAB caps variables at 2 GB
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
        yield tmp
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)  # mkstemp makes 0600; give the result the usual permissions
        _publish(tmp, path, force)
    except OSError as err:  # ENOSPC, EIO, EDQUOT...: one line, nothing left behind
        raise FencliError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)


def refuse_existing(paths: list[Path | None], force: bool) -> None:
    """Fail before any work when an output exists, rather than after minutes of computing."""
    for p in paths:
        if p is not None and p.exists() and not force:
            raise FencliError(f"{p} exists: pass --force to overwrite it")


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
        pass
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    """Write ``text`` as UTF-8, line ends as given, atomically."""
    with atomic_path(path, force) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(path)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]], line_end: str = "\n") -> str:
    """A CSV table as text: ``header``, then ``rows`` (None is an empty cell, a float written in full)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=line_end)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


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
        elif ext == ".mat" and arr.nbytes <= _MAT_V5_LIMIT:
            import scipy.io

            scipy.io.savemat(tmp, {key: arr})
        elif ext == ".mat":
            _write_mat73(tmp, arr, key)
        else:
            _write_h5(tmp, arr, key, meta)
    return path


def _write_mat73(tmp: Path, arr: np.ndarray, key: str) -> None:
    """MATLAB v7.3: HDF5 behind a 512-byte MAT header, arrays stored with their axes reversed."""
    import h5py

    cls = mat.CLASSES.get(arr.dtype.str[1:])
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
        for name, value in (meta.get("georef") or {}).items():  # str, number or list: no reader gives more
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
    with atomic_path(hdr, force) as tmp_hdr, atomic_path(data, force) as tmp_data:  # an existing one stops both
        with open(tmp_data, "wb") as out:
            out.write(bytes(header_offset))
            envi.write_data(out, arr, dt, interleave)
        tmp_hdr.write_text(text)
    return hdr, data


def write_raster(path: str | Path, array: np.ndarray, georef: GeoRef | None, *,
                 force: bool = False, key: str = "scores", description: str = "",
                 nodata: float | None = None) -> str | None:
    """Write a raster output georeferenced like the input: GeoTIFF for ``.tif``, else :func:`write_array`
    (ENVI ``.hdr``/``.img`` gets ``map info`` / ``coordinate system string`` and keeps the array's
    dtype; ``.h5`` gets them as dataset attributes). Returns a one-line note when the chosen format
    cannot carry the georeferencing the input had.
    """
    path = Path(path)
    if path.suffix.lower() in geotiff.EXTENSIONS:
        write_geotiff(path, array, georef, force=force, descriptions=[description] if description else None,
                      nodata=nodata)
        return None
    fields = {"georef": envi_fields(georef)}  # not the input's wavelengths: a map has one band
    if path.suffix.lower() in (".hdr", ".img"):
        write_envi_scene(path, np.asarray(array), meta=fields, force=force)  # keeps uint8 masks uint8
    else:
        write_array(path, array, force=force, key=key, meta=fields)
    if georef is not None and path.suffix.lower() in NO_GEOREF:
        return f"{path.name}: {path.suffix} holds no georeferencing (use .tif or .hdr to keep it)"
    return None


def write_geotiff(path: str | Path, array: np.ndarray, georef: GeoRef | None, *, force: bool = False,
                  descriptions: list[str] | None = None, nodata: float | None = None) -> Path:
    """Write an ``H x W`` or ``H x W x B`` array as a compressed GeoTIFF, atomically.

    Without ``georef`` the file has no transform or CRS (a plain pixel grid).
    """
    rasterio = geotiff.import_rasterio()
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    arr = np.asarray(array)
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    count, h, w = arr.shape
    floating = np.issubdtype(arr.dtype, np.floating)
    profile: dict[str, Any] = dict(driver="GTiff", height=h, width=w, count=count, dtype=arr.dtype.name,
                                   compress="deflate", predictor=3 if floating else 2,
                                   interleave="band" if count > 1 else "pixel", nodata=nodata,
                                   transform=Affine(*georef.transform) if georef is not None else None)
    if h >= 256 and w >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if georef is not None and georef.crs:
        try:
            profile["crs"] = CRS.from_user_input(georef.crs)
        except Exception as err:
            raise FencliError(f"the input's coordinate system is not understood by GDAL: {err}") from None
    with atomic_path(path, force=force) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr)
            for i, text in enumerate(descriptions or [], start=1):
                dst.set_band_description(i, text)
    return Path(path)
