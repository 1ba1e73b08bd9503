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
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fencli.errors import FencliError
from fencli.formats import envi, geotiff, mat
from fencli.georef import GeoRef, envi_fields

WRITE_EXTENSIONS = (".npy", ".mat", ".h5", ".hdf5", ".hdr", ".img")
NO_GEOREF = (".npy", ".npz", ".mat")  # formats with no place fencli puts a map grid in
GEO_SUFFIXES = (".tif", ".tiff", ".hdr", ".img", ".h5", ".hdf5")  # raster formats that carry a map grid
_MAT_V5_LIMIT = 2**31 - 2**16  # v5 stores byte counts in 32 bits; MATLAB caps variables at 2 GB
TEMP_MARK = ".tmp"  # temp files are ``.<name>.<pid>.<random>.tmp<suffix>`` beside the target


def temp_beside(path: Path) -> Path:
    """A new empty temporary file beside ``path`` (same folder, so publishing it is one rename),
    named so that :func:`remove_stale_temps` recognises it; stale ones of dead processes go first."""
    import tempfile

    remove_stale_temps(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=f"{TEMP_MARK}{path.suffix}",
                                    dir=path.parent)
    except OSError as err:
        raise FencliError(f"cannot write in {path.parent}: {err.strerror or err}") from None
    os.close(fd)
    return Path(name)


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
    plan = _STAGING.get()
    if plan is not None and plan.covers(path):  # one of a run's outputs: published with the others
        with plan.stage(path) as tmp:
            yield tmp
        return
    if path.is_dir():
        raise FencliError(f"{path} is a folder; give a file name")
    if path.exists() and not force:
        raise FencliError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise FencliError(f"cannot write {path}: folder {path.parent} does not exist")
    tmp = temp_beside(path)
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
        if meta.get("nodata") is not None:  # what fencli and netCDF readers take as the nodata value
            ds.attrs["_FillValue"] = np.asarray(meta["nodata"], dtype=arr.dtype if arr.dtype.kind == "f" else np.float64)


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
    fields = {"georef": envi_fields(georef), "nodata": nodata}  # not the input's wavelengths: a map has one band
    if path.suffix.lower() in (".hdr", ".img"):
        write_envi_scene(path, np.asarray(array), meta=fields, force=force)  # keeps uint8 masks uint8
    else:
        write_array(path, array, force=force, key=key, meta=fields)
    if georef is not None and path.suffix.lower() in NO_GEOREF:
        return f"{path.name}: {path.suffix} holds no georeferencing (use .tif or .hdr to keep it)"
    return None


def asks_for_grid(out: Path | None, mask: Path | None, objects: Path | None) -> bool:
    """Whether the user asked for map coordinates: a raster output in a format that carries a grid
    (GeoTIFF, ENVI, HDF5) or an object table (its x/y columns, GeoJSON geometry). Then an input
    without georeferencing is worth a note; a ``.npy`` score map alone is not."""
    rasters = [p for p in (out, mask) if p is not None and Path(p).suffix.lower() in GEO_SUFFIXES]
    return bool(rasters) or objects is not None


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


# --- a run's outputs as one plan: checked before any work, published together ---------------------
RASTER_SUFFIXES = (".tif", ".tiff", ".hdr", ".img", ".h5", ".hdf5", ".npy", ".mat")
OUTPUT_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {  # kind -> (what it holds, suffixes that fit)
    "raster": ("map", RASTER_SUFFIXES),
    "cube": ("cube", WRITE_EXTENSIONS),
    "npy": ("streamed cube", (".npy",)),
    "objects": ("object table", (".csv", ".geojson", ".json")),
    "png": ("PNG image", (".png",)),
    "csv": ("CSV table", (".csv",)),
    "json": ("JSON file", (".json",)),
}
_STAGING: ContextVar[OutputPlan | None] = ContextVar("fencli_output_plan", default=None)


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    """What makes two spellings the same file: the path with every symlink resolved, and the
    ``(device, inode)`` of an existing file (a hard link has another path, the same inode)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
        return real, (st.st_dev, st.st_ino)
    except OSError:
        return real, None


def envi_pair(path: Path) -> list[Path]:
    """The two files :func:`write_envi_scene` writes for ``x.hdr`` or ``x.img``."""
    hdr = path if path.suffix.lower() == ".hdr" else path.with_suffix(".hdr")
    data = path.with_suffix(".img") if path.suffix.lower() == ".hdr" else path
    return [hdr, data]


@dataclass
class PlannedOutput:
    flag: str  # the option that names it, for the messages: --out, --mask...
    path: Path  # as given
    kind: str
    files: list[Path] = field(default_factory=list)  # what it writes: two files for ENVI


class OutputPlan:
    """Every output of one run, checked before any work and published together at the end.

    :meth:`check` refuses, whatever the ``force``: an output whose suffix does not fit what it
    holds, a folder, a missing or unwritable folder (probed by creating a file, which root's
    permission bits would not tell), two outputs that are the same file, an output that is the same
    file as an input (the scene, its ENVI header or data file, the ground truth), however spelled:
    symlinks resolved, hard links by inode. Without ``force`` an existing output is refused.

    Inside :meth:`publishing`, every :func:`atomic_path` to a planned file writes a temp file beside
    it; when the block ends without error all are renamed to their names together (files a
    ``--force`` run replaces are kept aside until all are in place, and put back if any rename
    fails), and on any error (or Ctrl-C) the temps are removed: all outputs appear, or none.
    """

    def __init__(self, *, force: bool = False, inputs: dict[str, Any] | None = None) -> None:
        self.force = force
        self.inputs: list[tuple[str, Path]] = []
        for role, value in (inputs or {}).items():
            for p in ([] if value is None else value if isinstance(value, (list, tuple)) else [value]):
                self.add_input(role, p)
        self.outputs: list[PlannedOutput] = []
        self._staged: list[tuple[Path, Path]] = []  # (temp, target)

    def add_input(self, role: str, path: str | os.PathLike) -> None:
        """An input and, for an ENVI raster, its header and data file (``role`` names it in messages)."""
        from fencli.formats import source_files

        for i, f in enumerate(source_files(Path(path).expanduser())):
            part = "header" if f.suffix.lower() == ".hdr" else "data file"
            self.inputs.append((role if i == 0 else f"{role}'s ENVI {part}", f))

    def add(self, flag: str, path: str | os.PathLike | None, kind: str) -> None:
        if path is None:
            return
        path = Path(path).expanduser()
        ext = path.suffix.lower()
        files = envi_pair(path) if kind in ("raster", "cube") and ext in (".hdr", ".img") else [path]
        self.outputs.append(PlannedOutput(flag, path, kind, files))

    @classmethod
    def checked(cls, *, force: bool, inputs: dict[str, Any], outputs: dict[str, tuple[Any, str]]) -> OutputPlan:
        """A plan of ``outputs`` (``flag: (path or None, kind)``), checked; see :meth:`check`."""
        plan = cls(force=force, inputs=inputs)
        for flag, (path, kind) in outputs.items():
            plan.add(flag, path, kind)
        return plan.check()

    def check(self) -> OutputPlan:
        seen: dict[Any, tuple[str, Path]] = {}
        ins = []
        for role, f in self.inputs:
            real, ino = _identity(f)
            ins.append((role, f, real, ino))
        probed: set[str] = set()
        for out in self.outputs:
            what, fits = OUTPUT_KINDS[out.kind]
            ext = out.path.suffix.lower()
            if ext not in fits:
                raise FencliError(f"{out.flag} {out.path.name}: {'an' if what[0] in 'aeiou' else 'a'} {what} is written as "
                                  f"{', '.join(fits)}, not {ext or '(no extension)'}")
            for f in out.files:
                if f.is_dir():
                    raise FencliError(f"{out.flag} {f} is a folder; give a file name")
                real, ino = _identity(f)
                for role, src, in_real, in_ino in ins:
                    if real == in_real or (ino is not None and ino == in_ino):
                        said = f"{out.flag} {f}" if f == out.path else f"{out.flag} {out.path} writes {f}, which"
                        raise FencliError(f"{said} is the same file as the {role} {src}: an output "
                                          "never overwrites an input, --force or not")
                for key in filter(None, (real, ino)):
                    if key in seen and seen[key][1] is not out:
                        raise FencliError(f"{seen[key][0]} and {out.flag} both name {f}: give each "
                                          "output its own file")
                    seen[key] = (out.flag, out)  # type: ignore[assignment]
                folder = f.parent
                if not folder.is_dir():
                    raise FencliError(f"cannot write {out.flag} {f}: folder {folder} does not exist")
                if str(folder.resolve()) not in probed:
                    _probe(folder, f"{out.flag} {f}")
                    probed.add(str(folder.resolve()))
                if not self.force and os.path.lexists(f):
                    raise FencliError(f"{f} exists: pass --force to overwrite it")
        return self

    def covers(self, path: Path) -> bool:
        real = os.path.realpath(path)
        return any(os.path.realpath(f) == real for out in self.outputs for f in out.files)

    @contextmanager
    def stage(self, path: Path) -> Iterator[Path]:
        """A temp file beside ``path``, kept for :meth:`publishing` to rename when the run succeeds."""
        tmp = temp_beside(path)
        try:
            yield tmp
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise FencliError(f"cannot write {path}: {err.strerror or err}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._staged.append((tmp, path))

    @contextmanager
    def publishing(self) -> Iterator[OutputPlan]:
        """Stage every planned write made in the block; publish all when it ends well, none otherwise."""
        token = _STAGING.set(self)
        try:
            yield self
        except BaseException:
            self._discard()
            raise
        finally:
            _STAGING.reset(token)
        self._publish_all()

    def _discard(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged.clear()

    def _publish_all(self) -> None:
        import tempfile

        staged, self._staged = self._staged, []
        backups: dict[Path, Path | None] = {}
        done: list[Path] = []
        try:
            for tmp, target in staged:  # keep what --force replaces until every output is in place
                if self.force and target.exists():
                    fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.",
                                                suffix=f"{TEMP_MARK}{target.suffix}", dir=target.parent)
                    os.close(fd)
                    try:
                        os.unlink(name)
                        os.link(target, name)
                        backups[target] = Path(name)
                    except OSError:  # no hard links here: that one cannot be put back
                        backups[target] = None
                        Path(name).unlink(missing_ok=True)
            for tmp, target in staged:
                _publish(tmp, target, self.force)
                done.append(target)
            for tmp, _ in staged:  # published by a hard link: the temp name goes
                tmp.unlink(missing_ok=True)
        except BaseException as err:
            for target in reversed(done):
                old = backups.get(target)
                if old is not None:
                    os.replace(old, target)
                elif target not in backups:
                    target.unlink(missing_ok=True)
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            if isinstance(err, OSError):
                raise FencliError(f"cannot write {staged[len(done)][1]}: {err.strerror or err}; "
                                  "no output was written") from None
            if isinstance(err, FencliError):
                raise FencliError(f"{err}; no output was written") from None
            raise
        finally:
            for old in backups.values():
                if old is not None:
                    old.unlink(missing_ok=True)


def _probe(folder: Path, what: str) -> None:
    """Fail now if ``folder`` takes no new file (read-only, /proc, full quota), before any work."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=".fencli-probe.", dir=folder)
    except OSError as err:
        raise FencliError(f"cannot write {what}: folder {folder} is not writable "
                          f"({err.strerror or err})") from None
    os.close(fd)
    os.unlink(name)
