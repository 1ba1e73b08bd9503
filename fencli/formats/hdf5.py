"""HDF5 (and MATLAB v7.3) through h5py: datasets memory-mapped, or read a slice at a time."""

from __future__ import annotations

import operator
from collections.abc import Collection
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fencli.errors import FencliError
from fencli.formats.base import ArrayFile, Entry

SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: Path) -> bool:
    """HDF5's signature at offset 0, 512, 1024, ... (a user block, 512 bytes in MATLAB v7.3): the test
    ``h5py.is_hdf5`` makes, without importing h5py for every v5 ``.mat``."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        offset = 0
        while offset + 8 <= size:
            f.seek(offset)
            if f.read(8) == SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


class LazyCube:
    """Read-only array view of an h5py dataset with permuted axes; a slice reads only that slice.

    Supports what tiled code needs: ``shape``/``dtype``/``ndim``, integer and slice indexing,
    ``transpose`` and ``np.asarray`` (which reads everything). Other indexing materializes first.
    """

    def __init__(self, source: Any, perm: tuple[int, ...]) -> None:
        self.source = source
        self.perm = tuple(perm)
        self.shape = tuple(source.shape[p] for p in self.perm)
        self.dtype = np.dtype(source.dtype)

    ndim = property(lambda self: len(self.shape))
    T = property(lambda self: self.transpose())

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


def open_arrays(path: Path, matlab_classes: Collection[str] = ()) -> ArrayFile:
    """The numeric datasets, left open for lazy reads; with ``matlab_classes`` (MATLAB v7.3) axes are
    reversed (MATLAB writes column-major) and only datasets of those classes count."""
    import h5py

    matlab = bool(matlab_classes)
    handle = h5py.File(path, "r")
    entries: dict[str, Entry] = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset) or obj.size == 0:
            return
        dtype = obj.dtype
        if dtype.names is not None and set(dtype.names) == {"real", "imag"}:  # MATLAB's complex
            dtype = np.result_type(dtype["real"], np.complex64)
        if dtype.kind not in "biufc":
            return
        if matlab:
            cls = obj.attrs.get("MATLAB_class", b"")
            cls = cls.decode() if isinstance(cls, bytes) else str(cls)
            if name.startswith("#") or "MATLAB_empty" in obj.attrs or cls not in ("", *matlab_classes):
                return
            dtype = np.dtype(bool) if cls == "logical" else dtype
        shape = obj.shape[::-1] if matlab else obj.shape
        entries[name] = Entry(tuple(shape), dtype, partial(_array, path, obj, matlab))

    try:
        handle.visititems(visit)
    except Exception:
        handle.close()
        raise

    def attrs(name: str) -> dict:
        merged = _plain_attrs(handle.attrs)
        merged.update(_plain_attrs(handle[name].attrs))
        return merged

    return ArrayFile(entries, "mat-v7.3" if matlab else "hdf5", attrs, handle.close)


def _array(path: Path, ds: Any, reverse: bool) -> np.ndarray | LazyCube:
    """A memmap of a contiguous uncompressed dataset, else a :class:`LazyCube` over it."""
    perm = tuple(reversed(range(ds.ndim))) if reverse else tuple(range(ds.ndim))
    if ds.ndim >= 3:  # a cube; a sparsely written mask is a valid ground truth (unwritten = 0 = background)
        check_stored(path, ds)
    offset = None
    if ds.chunks is None and ds.compression is None and not getattr(ds, "external", None):
        try:
            offset = ds.id.get_offset()
        except Exception:
            offset = None
    if offset is not None and path.stat().st_size >= offset + ds.size * ds.dtype.itemsize:
        return np.memmap(path, dtype=ds.dtype, mode="r", offset=offset, shape=ds.shape).transpose(perm)
    return LazyCube(ds, perm)


def check_stored(path: Path, ds: Any) -> None:
    """Refuse at once a dataset that declares data it does not store: a chunked dataset with no
    chunk written, or fewer than 1% of its chunks (counted from the chunk index,
    ``id.get_num_chunks()``: metadata only, no data read), or a contiguous one with no storage
    allocated. A partly written one (1% or more) is read: its unwritten chunks hold the dataset's
    fill value (nodata when a ``_FillValue`` or ``nodata`` attribute, or ``--nodata``, says so). Reading one would scan the whole declared extent of
    fill values (hours for a 100000 x 100000 x 200 declaration) to detect nothing."""
    shape = tuple(ds.shape)
    if not shape or 0 in shape:
        return
    declared = f"{' x '.join(map(str, shape))} {ds.dtype.name} ({_size(ds.size * ds.dtype.itemsize)})"
    where = f"{path.name}: dataset {ds.name!r} declares {declared}"
    try:
        if ds.chunks is not None:
            total = 1
            for n, c in zip(shape, ds.chunks):
                total *= -(-n // c)
            stored = ds.id.get_num_chunks()
            if stored == 0:
                raise FencliError(f"{where} but stores no data (none of its {total} chunks was ever "
                                  "written): refusing to scan it")
            if stored * 100 < total:
                raise FencliError(f"{where} but stores only {stored} of its {total} chunks (over 99% "
                                  "never written, read as fill values): refusing to scan it")
        elif ds.id.get_storage_size() == 0 and not getattr(ds, "external", None):
            raise FencliError(f"{where} but stores no data (never written): refusing to scan it")
    except FencliError:
        raise
    except Exception:  # an HDF5 library without the chunk query: read as before
        return


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return ""


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
