"""The Dask engine on an in-process LocalCluster equals the local engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("distributed")

from test_stream import B, as_fn, local_mean_diff, random_fen  # noqa: E402

from fencli.batch import run_batch  # noqa: E402
from fencli.dask_engine import dask_client, detect_dask, tiled_local_dask  # noqa: E402
from fencli.detectors import grx  # noqa: E402
from fencli.stream import detect_stream  # noqa: E402
from fencli.synthetic import planted_scene  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=1, threads=2) as c:
        yield c


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    cube, gt = planted_scene(23, 19, B + 3, n_anomalies=4, seed=5)
    path = tmp_path_factory.mktemp("dask") / "c.npy"
    np.save(path, cube)
    return path, cube


@pytest.mark.parametrize("method,options", [("grx", None), ("slrx", {"block_size": 4}),
                                            ("lrx", {"inner": 3, "outer": 9})])
def test_dask_fe_detection_equals_local_engine(client, scene_file, tmp_path, method, options):
    path, _ = scene_file
    fen = as_fn(random_fen())
    local = detect_stream(path, method, fen=fen, bands=B, tile=8, options=options, workdir=tmp_path).scores
    remote = detect_dask(path, method, fen=fen, bands=B, tile=8, options=options, workdir=tmp_path).scores
    np.testing.assert_allclose(remote, local, rtol=1e-9, atol=1e-12)
    assert not list(tmp_path.glob("fencli-*"))


def test_dask_raw_grx_on_an_in_memory_cube_equals_in_memory_grx(client, scene_file):
    cube = scene_file[1]
    np.testing.assert_allclose(detect_dask(cube, "grx", tile=7).scores, grx(cube), rtol=1e-9)


def test_dask_map_overlap_local_detector_equals_whole_scene(client, scene_file):
    cube = scene_file[1]
    whole = local_mean_diff(cube, None, 3)
    np.testing.assert_allclose(tiled_local_dask(cube, local_mean_diff, 3, tile=6, radius=3), whole, rtol=1e-12)


def test_dask_batch_is_one_task_per_scene_and_survives_a_corrupt_file(client, tmp_path):
    cubes = {f"s{i}": planted_scene(12 + i, 15, 6, n_anomalies=2, seed=i)[0] for i in range(3)}
    for name, cube in cubes.items():
        np.save(tmp_path / f"{name}.npy", cube)
    (tmp_path / "broken.npy").write_bytes(b"not a numpy file at all")
    summary = run_batch([tmp_path], tmp_path / "out", client=client, progress=False)
    assert summary.counts() == {"ok": 3, "skipped": 0, "error": 1}
    for name, cube in cubes.items():
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{name}.grx.npy"), grx(cube), rtol=1e-5)
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["error", "ok", "ok", "ok"]
