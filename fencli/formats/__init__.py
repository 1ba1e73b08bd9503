"""Scene file formats, one module each, chosen here by extension; :mod:`fencli.io` reads through them.

============================  =======================================================  =========
extension                     how                                                       lazy
============================  =======================================================  =========
``.mat`` v5 / v7              read here (v4, big-endian: :mod:`scipy.io`); only the     no
                              chosen variables are loaded
``.mat`` v7.3 (HDF5)          :mod:`h5py`; MATLAB writes column-major, so every array   yes
                              is read with its axes reversed
``.npy``                      :func:`numpy.load` with ``mmap_mode="r"``                 yes
``.npz``                      only the chosen members are decompressed                  no
``.h5`` ``.hdf5`` ``.he5``    :mod:`h5py`                                               yes
ENVI ``.hdr`` + data          :mod:`fencli.formats.envi` memmap (BSQ/BIL/BIP, either    yes
                              byte order, header offset, data types 1-5 and 12-15);
                              give the header or the data file (``.img``, ``.dat``...)
GeoTIFF ``.tif`` ``.tiff``    rasterio (the ``gis`` extra), bands = spectral bands;     no
                              transform + CRS in ``meta["georef"]``, nodata -> NaN
============================  =======================================================  =========

"Lazy" cubes are memmaps or, for chunked/compressed HDF5, :class:`~fencli.formats.hdf5.LazyCube`:
a slice reads only that slice, so out-of-core code never holds the whole scene. Array formats give
``open_arrays(path) -> ArrayFile`` (:mod:`~fencli.formats.base`), ENVI and GeoTIFF ``read_cube(path)
-> (cube, meta)``; ground-truth images (PNG/TIFF) are read by :mod:`~fencli.formats.image`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from fencli.errors import FencliError
from fencli.formats import envi, geotiff, hdf5, image, mat, npy

FORMATS = {".mat": mat, ".npy": npy, ".npz": npy, ".h5": hdf5, ".hdf5": hdf5, ".he5": hdf5, ".hdr": envi,
           **dict.fromkeys(envi.DATA_SUFFIXES, envi), ".tif": geotiff, ".tiff": geotiff, ".png": image}
READ_EXTENSIONS = tuple(s for s, module in FORMATS.items() if s and module is not image)  # PNG: masks only


def format_of(path: Path) -> ModuleType:
    """The module that reads ``path``: by extension, else ENVI when a header lies beside it."""
    ext = path.suffix.lower()
    if ext in FORMATS:
        return FORMATS[ext]
    try:
        envi.header_for(path)
        return envi
    except FencliError:
        raise FencliError(f"{path.name}: unknown format {ext or '(no extension)'}; readable: "
                          f"{', '.join(READ_EXTENSIONS)} (ENVI data needs its .hdr beside it)"
                          ) from None


def source_files(path: Path) -> list[Path]:
    """The files reading ``path`` opens: ``path``, and for an ENVI raster also its header or data
    file (the header's ``data file`` field, else the file beside it). Best effort, never raises: a
    path that does not read fails later in the reader, with its own message."""
    files = [path]
    try:
        if format_of(path) is not envi:
            return files
        hdr = envi.header_for(path)
        if not hdr.is_file():  # a FIFO named x.hdr would block the read: the reader refuses it
            return files
        fields = envi.parse_header(hdr.read_text(errors="replace"), hdr)
        if "data file" in fields:
            data = hdr.parent / fields["data file"]
        else:
            data = path if path.suffix.lower() != ".hdr" else envi.data_for(hdr)
    except (FencliError, OSError, ValueError):
        return files
    return files + [f for f in (hdr, data) if f != path]
