"""Tile grids, window reads of file-backed cubes, streaming range."""

from __future__ import annotations

import numpy as np
import pytest

from fencli.errors import FencliError
from fencli.formats.npy import npy_header
from fencli.tiles import Cube, RawCube, create_raw, default_tile, grid, open_cube, split


@pytest.mark.parametrize("n,size,align", [(23, 10, 1), (23, 10, 4), (5, 10, 1), (100, 7, 3), (37, 37, 8)])
def test_split_covers_in_order_with_aligned_bounded_parts(n, size, align):
    parts = split(n, size, align)
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert all(0 < b - a <= max(size, align) for a, b in parts)
    assert all(a % align == 0 for a, _ in parts)


@pytest.mark.parametrize("h,w,tile,halo", [(23, 19, 7, 4), (12, 11, 5, 2), (9, 40, 100, 4)])
def test_grid_cores_partition_the_scene_and_halos_stop_at_borders(h, w, tile, halo):
    count = np.zeros((h, w), int)
    for t in grid(h, w, tile, halo):
        r0, r1, c0, c1 = t.core
        e0, e1, f0, f1 = t.ext
        count[r0:r1, c0:c1] += 1
        assert (e0, f0) == (max(0, r0 - halo), max(0, c0 - halo))
        assert (e1, f1) == (min(h, r1 + halo), min(w, c1 + halo))
        ext = np.arange((e1 - e0) * (f1 - f0)).reshape(e1 - e0, f1 - f0)
        assert ext[t.crop].shape == (r1 - r0, c1 - c0)
        assert min(e1 - e0, f1 - f0) >= min(5, h, w) or halo < 4
    assert (count == 1).all()


def test_rawcube_windows_equal_numpy_slices(tmp_path):
    a = np.random.default_rng(0).random((23, 17, 5)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    cube = open_cube(tmp_path / "a.npy")
    assert isinstance(cube, RawCube) and cube.shape == a.shape
    np.testing.assert_array_equal(cube.window(3, 9, 2, 11, 4), a[3:9, 2:11, :4])
    np.testing.assert_array_equal(cube.window(0, 23, 0, 17), a)
    cube.close()


def test_fortran_npy_and_memmap_go_through_the_generic_reader(tmp_path):
    a = np.random.default_rng(1).random((8, 9, 4))
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    assert npy_header(tmp_path / "f.npy")[2] is True
    cube = open_cube(tmp_path / "f.npy")
    assert type(cube) is Cube
    np.testing.assert_array_equal(cube.window(1, 7, 2, 5, 3), a[1:7, 2:5, :3])
    mm = np.load(tmp_path / "f.npy", mmap_mode="r")
    np.testing.assert_array_equal(Cube(mm[:, :, :2]).window(2, 6, 0, 9), a[2:6, :, :2])


def test_create_raw_writes_blocks_into_a_loadable_npy(tmp_path):
    a = np.random.default_rng(2).random((10, 7, 3)).astype(np.float32)
    out = create_raw(tmp_path / "o.npy", a.shape)
    out.write(0, 0, a[:4])
    out.write(4, 0, a[4:, :3])
    out.write(4, 3, a[4:, 3:])
    np.testing.assert_array_equal(out.window(2, 9, 1, 6), a[2:9, 1:6])
    out.close()
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), a)


def test_truncated_npy_is_a_clear_error(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((10, 10, 4), np.float32))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) // 2])
    cube = open_cube(tmp_path / "t.npy")
    with pytest.raises(FencliError, match="truncated"):
        cube.window(0, 10, 0, 10)


def test_scan_matches_numpy_with_small_chunks_and_rejects_constant_and_nan(monkeypatch):
    from fencli import engine

    monkeypatch.setattr(engine, "row_chunk", lambda *a, **k: 2)
    a = np.random.default_rng(3).normal(size=(13, 6, 4))
    part = engine.scan(Cube(a), 3, stats=True)
    assert (part.lo, part.hi) == (a[:, :, :3].min(), a[:, :, :3].max())
    np.testing.assert_allclose(part.stats.covariance, np.cov(a[:, :, :3].reshape(-1, 3).T), rtol=1e-12)
    with pytest.raises(FencliError, match="constant"):
        engine.scan(Cube(np.ones((5, 5, 2))), 2, stats=False)
    a[7, 2, 1] = np.nan
    with pytest.raises(FencliError, match="NaN"):
        engine.scan(Cube(a), 4, stats=False)


def test_default_tile_shrinks_with_the_budget():
    assert default_tile(200, budget=1 << 30) > default_tile(200, budget=64 << 20) >= 64


def _rss_file() -> int:
    status = open("/proc/self/status").read()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("RssFile"))) * 1024


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_DONTNEED"), reason="needs madvise")
def test_memmap_windows_do_not_accumulate_file_pages_in_the_resident_set(tmp_path):
    a = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(400, 250, 200))
    a[:] = 1.0  # 80 MB
    a.flush()
    del a
    before = _rss_file()
    cube = Cube(np.load(tmp_path / "big.npy", mmap_mode="r"))
    total = sum(float(cube.window(r, r + 20, 0, 250).sum()) for r in range(0, 400, 20))
    assert total == 400 * 250 * 200
    assert _rss_file() - before < 20 << 20  # without madvise all 80 MB would stay resident
    raw = open_cube(tmp_path / "big.npy")
    assert sum(float(raw.window(r, r + 20, 0, 250).sum()) for r in range(0, 400, 20)) == total
    assert _rss_file() - before < 20 << 20


def test_hdf5_and_mat73_cubes_are_read_by_window(tmp_path):
    h5py = pytest.importorskip("h5py")
    from fencli.io import read_scene

    a = np.random.default_rng(4).random((11, 13, 6)).astype(np.float32)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["cube"] = a
    scene = read_scene(tmp_path / "c.h5", validate=False)
    np.testing.assert_array_equal(Cube(scene.cube).window(2, 9, 3, 12, 4), a[2:9, 3:12, :4])
    with h5py.File(tmp_path / "m.mat", "w", userblock_size=512) as f:
        f["data"] = a.transpose(2, 1, 0)  # MATLAB v7.3 stores column-major: reversed axes
    with open(tmp_path / "m.mat", "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM")
    cube = Cube(read_scene(tmp_path / "m.mat", validate=False).cube)
    np.testing.assert_array_equal(cube.window(3, 8, 0, 13), a[3:8])
