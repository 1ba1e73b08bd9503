"""MATLAB ``.mat`` files: v5/v7 numeric arrays read here, v7.3 (HDF5 inside) through
:mod:`fencli.formats.hdf5`, anything else (v4, big-endian, a damaged file) through scipy.io.

Importing scipy.io costs about 0.12 s, a seventh of a whole FE+GRX run on a 100 x 100 scene, for
what MATLAB's documented v5 layout gives in a few lines: tagged elements, zlib-compressed or not,
each real array stored column-major under its name. Arrays keep their stored type, as in SciPy
(a ``double`` saved as ``uint16`` loads as ``uint16``); tests compare every type with scipy.io.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np

from fencli.formats import hdf5
from fencli.formats.base import ArrayFile, Entry

CLASSES = {"f8": "double", "f4": "single", "i1": "int8", "u1": "uint8", "i2": "int16", "u2": "uint16",
           "i4": "int32", "u4": "uint32", "i8": "int64", "u8": "uint64", "b1": "logical"}
DTYPES = {v: np.dtype(k) for k, v in CLASSES.items()}  # MATLAB class -> dtype
# v5 storage types (miINT8 = 1 ...) and numeric array classes (mxDOUBLE = 6 ...) as dtype codes
_STORED = {1: "<i1", 2: "<u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 9: "<f8", 12: "<i8",
           13: "<u8"}
_CLASS = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
_MATRIX, _COMPRESSED, _PEEK = 14, 15, 2048  # an array's name and shape lie in its first bytes


def open_arrays(path: Path) -> ArrayFile:
    """The numeric variables of a ``.mat`` file; only the chosen ones are ever loaded."""
    if hdf5.is_hdf5(path):
        return hdf5.open_arrays(path, matlab_classes=DTYPES)
    try:
        found = _scan(path)
    except (struct.error, ValueError, KeyError, zlib.error):  # UnicodeDecodeError is a ValueError
        found = None
    if found is not None:
        return ArrayFile({name: Entry(shape, dtype, partial(_load if dtype.kind == "c" else _read, path,
                                                            *(() if dtype.kind == "c" else (offset,)), name))
                          for name, (shape, dtype, offset) in found.items()}, "mat-v5")
    import scipy.io

    entries = {name: Entry(tuple(shape), DTYPES[cls], partial(_load, path, name))
               for name, shape, cls in scipy.io.whosmat(path) if cls in DTYPES}
    return ArrayFile(entries, "mat-v5")


def _load(path: Path, name: str) -> np.ndarray:
    import scipy.io

    return scipy.io.loadmat(path, variable_names=[name])[name]


def _elements(buf: memoryview) -> Iterator[tuple[int, memoryview]]:
    """(type, payload) of each data element in ``buf``, small (data inside the tag) or not."""
    pos = 0
    while pos + 8 <= len(buf):
        kind, size = struct.unpack_from("<II", buf, pos)
        if kind >> 16:
            yield kind & 0xFFFF, buf[pos + 4: pos + 4 + (kind >> 16)]
            pos += 8
        else:
            yield kind, buf[pos + 8: pos + 8 + size]
            pos += 8 + size + (-size) % 8


def _matrix(payload: memoryview, load: bool) -> tuple[str, tuple[int, ...], np.dtype, np.ndarray | None] | None:
    """(name, shape, dtype, array if ``load``) of a real numeric or logical array element, else None."""
    parts = _elements(payload)
    head = [bytes(data) for _, data in itertools.islice(parts, 3)]
    if len(head) < 3:
        raise ValueError("truncated array header")
    flags, dims, name = head
    word = struct.unpack("<I", flags[:4])[0]
    if word & 0xFF not in _CLASS:  # cells, structs, text, sparse
        return None
    shape = struct.unpack(f"<{len(dims) // 4}i", dims)
    dtype = np.dtype(bool if word & 0x200 else _CLASS[word & 0xFF])
    if word & 0x800:  # complex: listed (so a message can name it), never a cube; scipy.io loads it
        return (None if load else (name.decode(), shape, np.result_type(dtype, np.complex64), None))
    if not load:
        return name.decode(), shape, dtype, None
    kind, data = next(parts)
    array = np.frombuffer(data, _STORED[kind]).reshape(shape, order="F")
    return name.decode(), shape, dtype, array


def _scan(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype, int]] | None:
    """name -> (shape, dtype, file offset) of the numeric arrays of a little-endian v5 file, else None."""
    with open(path, "rb") as f:
        head = f.read(128)
        if head[:6] != b"MATLAB" or head[124:128] != b"\x00\x01IM":
            return None
        found = {}
        while len(tag := f.read(8)) == 8:
            kind, size = struct.unpack("<II", tag)
            offset = f.tell() - 8
            body = f.read(min(size, _PEEK))
            if kind == _COMPRESSED:
                body = zlib.decompressobj().decompress(body, _PEEK)
                kind, body = struct.unpack_from("<I", body)[0], body[8:]
            if kind == _MATRIX and (info := _matrix(memoryview(body), load=False)):
                found[info[0]] = info[1:3] + (offset,)
            f.seek(offset + 8 + size)
        return found


def _read(path: Path, offset: int, name: str) -> np.ndarray:
    """One array found by :func:`_scan`; a short or damaged element goes to scipy.io (its message)."""
    with open(path, "rb") as f:
        f.seek(offset)
        kind, size = struct.unpack("<II", f.read(8))
        complete = offset + 8 + size <= path.stat().st_size  # a damaged size allocates nothing
        body = bytearray(size if complete else 0)
        complete = complete and f.readinto(body) == size
    try:
        if complete and kind == _COMPRESSED:
            body = memoryview(bytearray(zlib.decompress(body)))[8:]
        if complete:
            return _matrix(memoryview(body), load=True)[3]
    except (ValueError, KeyError, StopIteration, struct.error, zlib.error):  # scipy.io says what is wrong
        pass
    return _load(path, name)
