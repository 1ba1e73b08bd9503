"""Out-of-core pipeline: tiled/streamed results equal whole-scene results on odd sizes and tiles."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

from fencli import stream, tiles
from fencli.detectors import RXStats, grx
from fencli.errors import FencliError
from fencli.metrics import roc_auc
from fencli.preprocess import fen_input, minmax01
from fencli.stream import detect_stream, stream_grx, tiled_fen, tiled_local, tiled_slrx
from fencli.synthetic import planted_scene
from fencli.tiles import Cube, create_raw
from tests.test_detectors import slrx_loop

torch = pytest.importorskip("torch")
from export.fen import FEN  # noqa: E402

torch.set_num_threads(1)  # tiny tiles: threads only contend on a shared machine

B = 12


def random_fen(bands: int = B, variant: str = "plain", seed: int = 0) -> FEN:
    """A FEN with random weights and BN statistics, strong enough that a short halo shows."""
    torch.manual_seed(seed)
    m = FEN(bands, variant=variant).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    m.convh.weight.data *= 20  # inputs are in [-0.1, 0.1]: make layer1's spatial mixing matter
    m.conv2.weight.data *= 5
    m.conv2.bias.data += 0.05  # keep the head's final ReLU alive so contamination reaches the output
    return m


@pytest.fixture(scope="module")
def model() -> FEN:
    return random_fen()


def as_fn(model: FEN):
    def fen(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    return fen


@pytest.fixture(scope="module")
def scene():
    return planted_scene(23, 19, B + 3, n_anomalies=4, seed=5)


def whole_fen(model: FEN, cube: np.ndarray) -> np.ndarray:
    return as_fn(model)(fen_input(cube))[0].transpose(1, 2, 0)


def run_tiled(cube, model, tmp_path, tile, halo=tiles.FEN_HALO, supp_norm=False):
    out = create_raw(tmp_path / f"y{tile}-{halo}.npy", (*cube.shape[:2], B))
    old = stream.FEN_HALO
    stream.FEN_HALO = halo
    try:
        acc = tiled_fen(Cube(cube), as_fn(model), out, bands=B, vrange=(float(cube[..., :B].min()),
                        float(cube[..., :B].max())), tile=tile, supp_norm=supp_norm)
    finally:
        stream.FEN_HALO = old
    out.close()
    return np.load(out.path), acc


@pytest.mark.parametrize("tile", [5, 7, 10])
def test_tiled_fen_equals_whole_scene(scene, model, tmp_path, tile):
    cube = scene[0]
    whole = whole_fen(model, cube[..., :B])
    y, acc = run_tiled(cube, model, tmp_path, tile)
    assert np.abs(y - whole).max() <= 1e-5
    assert (acc.lo, acc.hi) == (y.min(), y.max())
    # A halo below the receptive radius (3) must show: the test can fail.
    y2, _ = run_tiled(cube, model, tmp_path, tile, halo=2)
    assert np.abs(y2 - whole).max() > 5e-5  # would fail the 1e-5 bound above


def test_tiled_supp_fen_equals_whole_scene_with_global_norm(scene, tmp_path):
    cube = scene[0][..., :B]
    plain, supp = random_fen(seed=1), random_fen(seed=1, variant="supp")
    whole = whole_fen(supp, cube)
    y, _ = run_tiled(cube, plain, tmp_path, 7, supp_norm=True)
    assert np.abs(y - whole).max() <= 1e-5 * np.abs(whole).max()
    # Folding the norm: a positive global scale is a no-op for min-max-first detectors.
    import fencli.detectors as det

    raw = whole_fen(plain, cube)
    assert np.abs(raw).max() > 10 * np.abs(whole).max()  # the scales really differ
    np.testing.assert_allclose(grx(raw), grx(whole), rtol=1e-4)
    np.testing.assert_allclose(det.slrx(raw, block_size=4), det.slrx(whole, block_size=4), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(det.lrx(raw, 3, 7), det.lrx(whole, 3, 7), rtol=1e-4)


def test_rxstats_merge_equals_direct():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(101, 7))
    s = RXStats(7)
    for a, b in [(0, 10), (10, 11), (11, 60), (60, 101)]:
        s.merge(RXStats(7).fit(x[a:b]))
    assert s.n == 101
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(s.covariance, np.cov(x.T), rtol=1e-12)


@pytest.mark.parametrize("chunk", [1, 4, 100])
def test_stream_grx_equals_in_memory_grx(scene, monkeypatch, chunk):
    cube, gt = scene
    monkeypatch.setattr(tiles, "row_chunk", lambda *a, **k: chunk)
    s = stream_grx(Cube(cube), bands=B)
    g = grx(cube[..., :B])
    np.testing.assert_allclose(s, g, rtol=1e-9)
    assert roc_auc(s, gt) == roc_auc(g, gt)


@pytest.mark.parametrize("tile,bs", [(7, 3), (9, 4), (50, 4)])
def test_tiled_slrx_equals_whole_scene_reference(scene, tile, bs):
    cube, gt = scene
    ref = slrx_loop(cube[..., :B], bs)
    got = tiled_slrx(Cube(cube), B, block_size=bs, tile=tile)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9)
    assert abs(roc_auc(got, gt) - roc_auc(ref, gt)) < 1e-9


def local_mean_diff(block: np.ndarray, vrange, radius: int) -> np.ndarray:
    """A local detector for the tiler's test: distance to the reflect-padded window mean."""
    x = minmax01(block, vrange)
    mean = scipy.ndimage.uniform_filter(x, size=(2 * radius + 1, 2 * radius + 1, 1), mode="reflect")
    return ((x - mean) ** 2).sum(-1)


@pytest.mark.parametrize("tile", [4, 6, 11])
def test_tiled_local_detector_equals_whole_scene(scene, tile):
    cube = scene[0]
    whole = local_mean_diff(cube, None, 3)
    got = tiled_local(Cube(cube), local_mean_diff, 3, tile=tile, radius=3)
    np.testing.assert_allclose(got, whole, rtol=1e-12)
    short = tiled_local(Cube(cube), local_mean_diff, 1, tile=tile, radius=3)
    assert not np.allclose(short, whole, rtol=1e-6)


@pytest.mark.parametrize("tile", [7, 10])
def test_tiled_lrx_equals_whole_lrx(scene, tile):
    from fencli import detectors as det

    cube, gt = scene
    whole = det.lrx(cube[..., :B], inner=3, outer=7)
    got = tiled_local(Cube(cube), det.lrx, stream.lrx_halo(outer=7), bands=B, tile=max(tile, 7), inner=3, outer=7)
    np.testing.assert_allclose(got, whole, rtol=1e-7)
    assert roc_auc(got, gt) == roc_auc(whole, gt)


@pytest.mark.parametrize("method", ["grx", "slrx"])
def test_detect_stream_with_fen_equals_whole_scene_pipeline(scene, model, tmp_path, method):
    cube, gt = scene
    np.save(tmp_path / "c.npy", cube)
    res = detect_stream(tmp_path / "c.npy", method, fen=as_fn(model), bands=B, tile=8,
                        workdir=tmp_path, options={"block_size": 4} if method == "slrx" else None)
    y = whole_fen(model, cube[..., :B])
    ref = grx(y) if method == "grx" else slrx_loop(y, 4)
    np.testing.assert_allclose(res.scores, ref, rtol=1e-4, atol=1e-9)
    assert abs(roc_auc(res.scores, gt) - roc_auc(ref, gt)) < 1e-3
    assert list(tmp_path.glob("fencli-*")) == []  # the temporary enhanced cube is gone


def test_detect_stream_rejects_small_and_short_scenes(tmp_path):
    with pytest.raises(FencliError, match="5 x 5"):
        detect_stream(np.zeros((4, 9, 3)))
    with pytest.raises(FencliError, match="bands"):
        detect_stream(np.zeros((9, 9, 3)), bands=5)
    with pytest.raises(FencliError, match="unknown method 'rx'"):  # before any pass over the data
        detect_stream(np.zeros((9, 9, 3)), "rx")


def test_tiled_slrx_equals_detectors_slrx(scene):
    from fencli import detectors as det

    cube, gt = scene
    whole = det.slrx(cube[..., :B], block_size=4)
    got = tiled_slrx(Cube(cube), B, block_size=4, tile=9)
    np.testing.assert_allclose(got, whole, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("variant", ["plain", "supp"])
def test_onnx_session_tiles_equal_its_whole_scene_enhance(scene, tmp_path, variant):
    from export import onnx_export
    from fencli import runtime

    path = onnx_export.export_model(random_fen(seed=2, variant=variant), tmp_path / f"fen-{variant}.onnx")
    session = runtime.get_session(path, "cpu", 1)
    cube = scene[0]
    whole = session.enhance(cube)
    out = create_raw(tmp_path / "y.npy", (*cube.shape[:2], B))
    tiled_fen(Cube(cube), stream.session_tile_fen(session), out, bands=B, tile=7,
              vrange=(float(cube[..., :B].min()), float(cube[..., :B].max())), supp_norm=variant == "supp")
    out.close()
    y = np.load(out.path)
    assert np.abs(y - whole).max() <= 1e-5 * np.abs(whole).max()
    import pickle

    handle = pickle.loads(pickle.dumps(stream.SessionTileFen(path, "cpu", 1)))  # what Dask ships
    x = fen_input(cube[:9, :8, :B])
    np.testing.assert_array_equal(handle(x), stream.session_tile_fen(session)(x))


@pytest.mark.shared
def test_shared_tiled_fe_grx_matches_whole_scene_and_reference_auc(shared, auc_reference, tmp_path_factory,
                                                                   method="grx"):
    """Published 200bands-supp checkpoint through ONNX, abu-airport-1 in 37-px tiles (norm folded)."""
    from export import onnx_export
    from fencli import detectors as det
    from fencli import runtime
    from conftest import load_shared_scene

    path = tmp_path_factory.getbasetemp() / "ferd-200-supp.onnx"
    if not path.exists():
        onnx_export.export_checkpoint(shared / "ferd-checkpoints" / "200bands-supp", path)
    session = runtime.get_session(path, "cpu")
    cube, gt = load_shared_scene("abu-airport-1")
    tiled = detect_stream(cube, method, fen=stream.session_tile_fen(session), bands=200, tile=37).scores
    whole = getattr(det, method)(session.enhance(cube))
    np.testing.assert_allclose(tiled, whole, rtol=1e-3, atol=1e-6 * whole.max())
    ref = auc_reference["abu-airport-1"]["ferd-200-supp"][f"FE+{method.upper()}"]["auc"]
    assert abs(roc_auc(tiled, gt) - ref) < 2e-4
