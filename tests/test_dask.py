"""The Dask engine on an in-process LocalCluster equals the local engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the Dask tests need the dask extra (pip install 'fencli[dask]')")

from test_engine import B, TorchEnhancer, random_fen  # noqa: E402

from fencli.batch import run_batch  # noqa: E402
from fencli.cluster import DaskExecutor, dask_client  # noqa: E402
from fencli.detectors import grx  # noqa: E402
from fencli.engine import run  # noqa: E402
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
                                            ("lrx", {"windows": (3, 9)})])
def test_dask_fe_detection_equals_local_engine(client, scene_file, tmp_path, method, options):
    path, _ = scene_file
    fen = TorchEnhancer(random_fen())
    local = run(path, method, enhancer=fen, tile=8, options=options, workdir=tmp_path).scores
    remote = run(path, method, enhancer=fen, tile=8, options=options, workdir=tmp_path,
                 executor=DaskExecutor(client)).scores
    np.testing.assert_allclose(remote, local, rtol=1e-9, atol=1e-12)
    assert not list(tmp_path.glob("fencli-*"))


def test_dask_raw_grx_on_an_in_memory_cube_equals_in_memory_grx(client, scene_file):
    cube = scene_file[1]
    np.testing.assert_allclose(run(cube, "grx", executor=DaskExecutor(client)).scores, grx(cube), rtol=1e-9)


def test_dask_refuses_a_whole_scene_run(client, scene_file):
    from fencli.errors import FencliError

    with pytest.raises(FencliError, match="--engine dask works on tiles"):
        run(scene_file[1], "grx", tile=0, executor=DaskExecutor(client))


def test_dask_batch_is_one_task_per_scene_and_survives_a_corrupt_file(client, tmp_path):
    cubes = {f"s{i}": planted_scene(12 + i, 15, 6, n_anomalies=2, seed=i)[0] for i in range(3)}
    for name, cube in cubes.items():
        np.save(tmp_path / f"{name}.npy", cube)
    (tmp_path / "broken.npy").write_bytes(b"not a numpy file at all")
    summary = run_batch([tmp_path], tmp_path / "out", client=client, progress=False)
    assert summary.counts() == {"ok": 3, "skipped": 0, "error": 1}
    for name, cube in cubes.items():
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{name}.grx.npy"), grx(cube), rtol=1e-5)
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["scenes"]
    assert [r["status"] for r in rows] == ["error", "ok", "ok", "ok"]


def test_cli_engine_dask_with_a_model_in_worker_processes(tmp_path):
    """`fencli detect --engine dask --scheduler ADDR`: worker processes load the model themselves."""
    from typer.testing import CliRunner

    from fencli.cli import _register, app

    _register()
    cube, gt = planted_scene(26, 22, 50, n_anomalies=3, seed=4)
    np.save(tmp_path / "c.npy", cube)
    with dask_client(workers=1, threads=1, processes=True) as proc_client:
        args = ["detect", str(tmp_path / "c.npy"), "--model", "fencli-50", "--out", str(tmp_path / "d.npy"),
                "--engine", "dask", "--scheduler", proc_client.scheduler.address, "--tile", "9", "--json"]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        workers = proc_client.run(lambda: __import__("os").getpid())
    assert json.loads(res.stdout)["model"] == "fencli-50"
    assert __import__("os").getpid() not in workers.values()  # the tasks really ran elsewhere
    from fencli.enhancers import load_session

    whole = grx(load_session("fencli-50", "cpu").enhance(cube))
    got = np.load(tmp_path / "d.npy")
    assert np.abs(got - whole).max() <= 1e-5 * whole.max()
