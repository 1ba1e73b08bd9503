"""NumPy ``.npy`` (memory-mapped) and ``.npz`` (only the chosen members decompressed) files."""

from __future__ import annotations

import os
import zipfile
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fencli.formats.base import ArrayFile, Entry


def npy_header(source: str | os.PathLike | BinaryIO) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran_order, data offset) of a ``.npy`` file or stream (an ``.npz`` member)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return npy_header(f)
    version = np.lib.format.read_magic(source)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(source)
    return tuple(shape), np.dtype(dtype), fortran, source.tell()


def open_arrays(path: Path) -> ArrayFile:
    """A ``.npy`` file's one array (named ``array``, memory-mapped) or an ``.npz`` file's members."""
    if path.suffix.lower() != ".npz":
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return ArrayFile({"array": Entry(arr.shape, arr.dtype, lambda: arr)}, "npy")
    entries = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                with zf.open(info) as member:
                    shape, dtype, _, _ = npy_header(member)
                name = info.filename[:-4]
                entries[name] = Entry(shape, dtype, partial(_npz_load, path, name))
    return ArrayFile(entries, "npz")


def _npz_load(path: Path, name: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        return npz[name]
