"""MATLAB ``.mat`` files: v4 to v7 through scipy.io, v7.3 (HDF5 inside) through :mod:`fencli.formats.hdf5`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from fencli.formats import hdf5
from fencli.formats.base import ArrayFile, Entry

CLASSES = {"f8": "double", "f4": "single", "i1": "int8", "u1": "uint8", "i2": "int16", "u2": "uint16",
           "i4": "int32", "u4": "uint32", "i8": "int64", "u8": "uint64", "b1": "logical"}
DTYPES = {v: np.dtype(k) for k, v in CLASSES.items()}  # MATLAB class -> dtype


def open_arrays(path: Path) -> ArrayFile:
    """The numeric variables of a ``.mat`` file; only the chosen ones are ever loaded."""
    if hdf5.is_hdf5(path):
        return hdf5.open_arrays(path, matlab_classes=DTYPES)
    import scipy.io

    entries = {name: Entry(tuple(shape), DTYPES[cls], partial(_load, path, name))
               for name, shape, cls in scipy.io.whosmat(path) if cls in DTYPES}
    return ArrayFile(entries, "mat-v5")


def _load(path: Path, name: str) -> np.ndarray:
    import scipy.io

    return scipy.io.loadmat(path, variable_names=[name])[name]
