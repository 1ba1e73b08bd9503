"""Tile grids with halos and bounded-memory access to ``H x W x bands`` cubes that do not fit in RAM.

A scene is processed as tiles: each tile's *core* is what it contributes to the output, its
*extent* is the core grown by a halo of real pixels on every side that is not a true scene border
(at a border nothing is added, so a detector's own border rule sees exactly the scene's border).
A local operator of radius ``r <= halo`` then gives on the core exactly its whole-scene result.

Reading never maps a whole file into the process: a C-ordered raw array (``.npy``, ENVI BIP) is
read by ``readinto`` per row segment, so file pages stay in the page cache and out of the resident
set; a ``numpy.memmap`` handed in by the caller is read slab by slab and its pages are released
with ``madvise(MADV_DONTNEED)`` after each slab (touched memmap pages count as RssFile).
"""

from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fencli.errors import FencliError
from fencli.formats.npy import npy_header

FEN_HALO = 4  # >= FERD's FEN receptive radius of 3 (three 3x3 convs); 4 keeps tiles >= 5 px


def fen_halo(enhancer: Any) -> int:
    """The halo a tiled run of ``enhancer`` needs: its ``halo`` (the receptive radius its metadata
    states: 1 for fencli's one-block adaptive core and ``fencli-B`` models), else :data:`FEN_HALO`
    (the published FERD models, whose three blocks reach 3 pixels)."""
    halo = getattr(enhancer, "halo", None)
    return FEN_HALO if halo is None else int(halo)


@dataclass(frozen=True)
class Tile:
    """``core`` = (r0, r1, c0, c1) written to the output; ``ext`` = core plus halo, clipped to the scene."""

    core: tuple[int, int, int, int]
    ext: tuple[int, int, int, int]

    @property
    def crop(self) -> tuple[slice, slice]:
        """Slices of an extent-shaped array that give the core."""
        r0, r1, c0, c1 = self.core
        e0, _, f0, _ = self.ext
        return slice(r0 - e0, r1 - e0), slice(c0 - f0, c1 - f0)

    @property
    def local_core(self) -> tuple[int, int, int, int]:
        """``core`` in the coordinates of an extent-shaped array: (r0, r1, c0, c1)."""
        rows, cols = self.crop
        return rows.start, rows.stop, cols.start, cols.stop


def split(n: int, size: int, align: int = 1) -> list[tuple[int, int]]:
    """``[0, n)`` cut into near-equal parts of at most ``size`` (rounded down to ``align``), boundaries
    on multiples of ``align``; even parts avoid a sliver at the end that a 5-px minimum would reject."""
    units = math.ceil(n / align)
    per = max(1, size // align)
    parts = math.ceil(units / per)
    edges = [min(n, round(units * k / parts) * align) for k in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def grid(h: int, w: int, tile: int | tuple[int, int], halo: int, align: int = 1) -> list[Tile]:
    """Row-major tiles covering ``h x w`` with cores of at most ``tile`` px and the given halo."""
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    if min(th, tw) < 1:
        raise FencliError(f"--tile must be at least 1, got {tile}")
    return [Tile((r0, r1, c0, c1),
                 (max(0, r0 - halo), min(h, r1 + halo), max(0, c0 - halo), min(w, c1 + halo)))
            for r0, r1 in split(h, th, align) for c0, c1 in split(w, tw, align)]


def available_memory() -> int:
    """Bytes the system can give without swapping: Linux's MemAvailable, read directly (importing
    psutil costs 0.05 s of every command), else psutil's figure (the same one on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        import psutil

        return psutil.virtual_memory().available


def default_tile(bands: int, budget: int | None = None) -> int:
    """Tile side whose FEN activations fit a memory budget (default: 1/8 of available RAM, <= 1 GiB).

    Per padded pixel the FEN holds the input, a few 256- and 128-channel float32 maps and the output:
    about ``(6 * 256 + 3 * bands) * 4`` bytes at peak.
    """
    if budget is None:
        budget = min(available_memory() // 8, 1 << 30)
    per_px = (6 * 256 + 3 * bands) * 4
    side = int(math.sqrt(budget / per_px)) - 2 * FEN_HALO
    return max(64, min(1024, side))


class Cube:
    """Bounded-memory window reads of an ``H x W x bands`` array-like (file-backed or in memory).

    ``window(r0, r1, c0, c1, bands)`` returns a new in-memory array of ``[r0:r1, c0:c1, :bands]``.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.shape: tuple[int, int, int] = tuple(int(s) for s in source.shape)  # type: ignore[assignment]
        self.dtype = np.dtype(source.dtype)
        if len(self.shape) != 3:
            raise FencliError(f"expected an H x W x bands cube, got shape {self.shape}")
        self._mm = _root_mmap(source)

    def window(self, r0: int, r1: int, c0: int, c1: int, bands: int | None = None) -> np.ndarray:
        out = np.array(self.source[r0:r1, c0:c1, :bands])
        if self._mm is not None:
            self._mm.madvise(mmap.MADV_DONTNEED)  # drop the slab's pages from our resident set
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_mm": None}  # an mmap does not pickle; the copy reads the array


def _root_mmap(arr: Any) -> mmap.mmap | None:
    """The ``mmap`` behind a numpy memmap (or a view of one), to release touched pages."""
    while arr is not None:
        mm = getattr(arr, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            return mm
        arr = getattr(arr, "base", None)
    return None


class RawCube(Cube):
    """A C-ordered ``H x W x B`` array at a byte offset in a file (``.npy`` body, ENVI BIP), read by
    ``readinto`` per row segment: no mapping, so the resident set holds only the requested window."""

    def __init__(self, path: str | Path, shape: tuple[int, int, int], dtype: Any, offset: int,
                 writable: bool = False) -> None:
        self.source = None
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
        self.dtype = np.dtype(dtype)
        self.offset = offset
        self.writable = writable
        self._f = open(self.path, "r+b" if writable else "rb", buffering=0)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_f"}  # Dask ships the path, not the handle

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._f = open(self.path, "r+b" if self.writable else "rb", buffering=0)

    def _seg(self, r: int, c: int) -> int:
        _, w, b = self.shape
        return self.offset + (r * w + c) * b * self.dtype.itemsize

    def window(self, r0: int, r1: int, c0: int, c1: int, bands: int | None = None) -> np.ndarray:
        b = self.shape[2]
        buf = np.empty((r1 - r0, c1 - c0, b), self.dtype)
        if c0 == 0 and c1 == self.shape[1]:  # full rows are one contiguous run
            self._readinto(buf, self._seg(r0, 0))
        else:
            for i in range(r1 - r0):
                self._readinto(buf[i], self._seg(r0 + i, c0))
        return buf if bands is None or bands == b else np.ascontiguousarray(buf[:, :, :bands])

    def _readinto(self, arr: np.ndarray, pos: int) -> None:
        view = memoryview(arr.reshape(-1).view(np.uint8))
        got = os.preadv(self._f.fileno(), [view], pos)
        if got != view.nbytes:
            raise FencliError(f"{self.path}: file is truncated (short read at byte {pos})")

    def write(self, r0: int, c0: int, block: np.ndarray) -> None:
        """Write an ``h x w x B`` block at (r0, c0), one row segment at a time."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        for i in range(block.shape[0]):
            os.pwrite(self._f.fileno(), memoryview(block[i].reshape(-1).view(np.uint8)), self._seg(r0 + i, c0))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> RawCube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_cube(source: Any) -> Cube:
    """A window reader for a :class:`Cube`, an ``H x W x bands`` array-like or a ``.npy`` path (read
    by window; other formats: :func:`fencli.io.read_scene`, whose cube may be a memmap)."""
    if isinstance(source, Cube):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FencliError(f"{path}: no such file")
        if path.suffix.lower() != ".npy":
            raise FencliError(f"{path}: only .npy is read by window here; read it with fencli.io.read_scene")
        try:
            shape, dtype, fortran, offset = npy_header(path)
        except ValueError as err:
            raise FencliError(f"{path}: not a valid .npy file ({err})") from None
        if len(shape) != 3:
            raise FencliError(f"{path}: expected a 3-D H x W x bands array, got shape {shape}")
        if not fortran and not dtype.hasobject:
            return RawCube(path, shape, dtype, offset)
        return Cube(np.load(path, mmap_mode="r"))
    return Cube(source)


def create_raw(path: str | Path, shape: tuple[int, int, int], dtype: Any = np.float32) -> RawCube:
    """A new ``.npy`` file of ``shape`` (sparse until written) opened for window writes and reads."""
    path = Path(path)
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        offset = f.tell()
        f.truncate(offset + int(np.prod(shape)) * dtype.itemsize)
    return RawCube(path, shape, dtype, offset, writable=True)


def row_chunk(w: int, bands: int, itemsize: int = 8, budget: int = 64 << 20) -> int:
    """Rows per streaming chunk so that one float64 chunk stays under ``budget`` bytes."""
    return max(1, budget // max(1, w * bands * itemsize))


def row_tiles(h: int, w: int, rows: int) -> list[Tile]:
    """Whole-row tiles of about ``rows`` rows, no halo: contiguous reads for passes without context."""
    return grid(h, w, (rows, w), 0)


def iter_rows(cube: Cube, budget: int = 64 << 20) -> Iterator[np.ndarray]:
    """Whole-row blocks over the cube, each under ``budget`` bytes in the cube's own dtype."""
    h, w, b = cube.shape
    for t in row_tiles(h, w, row_chunk(w, b, cube.dtype.itemsize, budget)):
        yield cube.window(*t.ext)
