"""The one engine: tiled/streamed results equal whole-scene results on odd sizes and tiles."""

from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pytest

from fencli import engine
from fencli.detectors import RXStats, grx, lrx, slrx
from fencli.engine import enhance, run
from fencli.errors import FencliError
from fencli.metrics import roc_auc
from fencli.preprocess import fen_input
from fencli.synthetic import planted_scene
from fencli.tiles import Cube, RawCube, create_raw
from tests.test_detectors import slrx_loop

try:  # the export extra: only the tests that run a PyTorch FEN need it (random_fen skips them)
    import torch
except ImportError:
    torch = None
else:
    torch.set_num_threads(1)  # tiny tiles: threads only contend on a shared machine

if TYPE_CHECKING:  # the export extra
    from export.fen import FEN

B = 12
NEEDS_TORCH = "a PyTorch FEN needs torch (pip install 'fencli[export]')"


def random_fen(bands: int = B, variant: str = "plain", seed: int = 0) -> FEN:
    """A FEN with random weights and BN statistics, strong enough that a short halo shows."""
    pytest.importorskip("torch", reason=NEEDS_TORCH)
    from export.fen import FEN

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


def as_fn(model: FEN):
    def fen(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    return fen


class TorchEnhancer:
    """A torch FEN with the engine's Enhancer interface; ``tiles`` is the model run per tile (for a
    ``supp`` whole model: the same weights without the norm, as the engine expects)."""

    needs_scene_stats = False

    def __init__(self, whole: FEN, tiles: FEN | None = None, variant: str = "plain") -> None:
        self.whole, self.tiles = whole, tiles or whole
        self.name, self.bands, self.info = "torch-fen", B, SimpleNamespace(variant=variant)

    def check_bands(self, available: int) -> None:
        if available < B:
            raise FencliError(f"the scene has {available} bands but the model needs {B}")

    def enhance(self, cube: np.ndarray) -> np.ndarray:
        return whole_fen(self.whole, cube[..., :B])

    def tile_fen(self, stats, vrange):
        return as_fn(self.tiles)


@pytest.fixture(scope="module")
def model() -> FEN:
    return random_fen()


@pytest.fixture(scope="module")
def scene():
    return planted_scene(23, 19, B + 3, n_anomalies=4, seed=5)


def whole_fen(model: FEN, cube: np.ndarray) -> np.ndarray:
    return as_fn(model)(fen_input(cube))[0].transpose(1, 2, 0)


def run_tiled(cube, model, tmp_path, tile, monkeypatch=None, halo=None, supp=None):
    if halo is not None:
        monkeypatch.setattr(engine, "fen_halo", lambda _: halo)
    fen = TorchEnhancer(supp, model, "supp") if supp is not None else TorchEnhancer(model)
    with create_raw(tmp_path / f"y{tile}-{halo}.npy", (*cube.shape[:2], B)) as out:
        assert enhance(cube, fen, tile=tile, out=out) is None
    return np.load(tmp_path / f"y{tile}-{halo}.npy")


@pytest.mark.parametrize("tile", [5, 7, 10])
def test_tiled_fen_equals_whole_scene(scene, model, tmp_path, monkeypatch, tile):
    cube = scene[0]
    whole = whole_fen(model, cube[..., :B])
    y = run_tiled(cube, model, tmp_path, tile)
    assert np.abs(y - whole).max() <= 1e-5
    # A halo below the receptive radius (3) must show: the test can fail.
    y2 = run_tiled(cube, model, tmp_path, tile, monkeypatch, halo=2)
    assert np.abs(y2 - whole).max() > 5e-5  # would fail the 1e-5 bound above


def test_tiled_supp_fen_equals_whole_scene_with_global_norm(scene, tmp_path):
    cube = scene[0][..., :B]
    plain, supp = random_fen(seed=1), random_fen(seed=1, variant="supp")
    whole = whole_fen(supp, cube)
    y = run_tiled(cube, plain, tmp_path, 7, supp=supp)
    assert np.abs(y - whole).max() <= 1e-5 * np.abs(whole).max()
    # Folding the norm: a positive global scale is a no-op for min-max-first detectors.
    raw = whole_fen(plain, cube)
    assert np.abs(raw).max() > 10 * np.abs(whole).max()  # the scales really differ
    np.testing.assert_allclose(grx(raw), grx(whole), rtol=1e-4)
    np.testing.assert_allclose(slrx(raw, block_size=4), slrx(whole, block_size=4), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(lrx(raw, 3, 7), lrx(whole, 3, 7), rtol=1e-4)


def test_rxstats_merge_equals_direct():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(101, 7))
    s = RXStats(7)
    for a, b in [(0, 10), (10, 11), (11, 60), (60, 101)]:
        s.merge(RXStats(7).fit(x[a:b]))
    assert s.n == 101
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(s.covariance, np.cov(x.T), rtol=1e-12)


@pytest.mark.parametrize("chunk", [1, 4, 100])
def test_streamed_grx_equals_in_memory_grx(scene, monkeypatch, chunk):
    cube, gt = scene
    monkeypatch.setattr(engine, "row_chunk", lambda *a, **k: chunk)
    s = run(Cube(cube), "grx", bands=B, tile=5).scores
    g = grx(cube[..., :B])
    np.testing.assert_allclose(s, g, rtol=1e-9)
    assert roc_auc(s, gt) == roc_auc(g, gt)


@pytest.mark.parametrize("tile,bs", [(7, 3), (9, 4), (50, 4)])
def test_tiled_slrx_equals_whole_scene_reference(scene, tile, bs):
    cube, gt = scene
    ref = slrx_loop(cube[..., :B], bs)
    got = run(cube, "slrx", bands=B, options={"block_size": bs}, tile=tile).scores
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9)
    assert abs(roc_auc(got, gt) - roc_auc(ref, gt)) < 1e-9


@pytest.mark.parametrize("tile", [7, 10])
def test_tiled_lrx_equals_whole_lrx(scene, tile):
    cube, gt = scene
    whole = lrx(cube[..., :B], inner=3, outer=7)
    got = run(cube, "lrx", bands=B, options={"windows": (3, 7)}, tile=tile).scores
    np.testing.assert_allclose(got, whole, rtol=1e-7)
    assert roc_auc(got, gt) == roc_auc(whole, gt)


@pytest.mark.parametrize("method", ["grx", "slrx"])
def test_tiled_fe_detection_equals_whole_scene(scene, model, tmp_path, method):
    cube, gt = scene
    np.save(tmp_path / "c.npy", cube)
    opts = {"block_size": 4} if method == "slrx" else None
    res = run(tmp_path / "c.npy", method, enhancer=TorchEnhancer(model), tile=8, workdir=tmp_path, options=opts)
    y = whole_fen(model, cube[..., :B])
    ref = grx(y) if method == "grx" else slrx_loop(y, 4)
    np.testing.assert_allclose(res.scores, ref, rtol=1e-4, atol=1e-9)
    assert abs(roc_auc(res.scores, gt) - roc_auc(ref, gt)) < 1e-3
    assert list(tmp_path.glob("fencli-*")) == []  # the temporary enhanced cube is gone


def test_run_rejects_small_short_scenes_and_unknown_methods_or_options():
    with pytest.raises(FencliError, match="5 x 5"):
        run(np.zeros((4, 9, 3)))
    with pytest.raises(FencliError, match="fewer than the 5 asked for"):
        run(np.zeros((9, 9, 3)), bands=5)
    with pytest.raises(FencliError, match="unknown method 'rx'"):  # before any pass over the data
        run(np.zeros((9, 9, 3)), "rx")
    with pytest.raises(FencliError, match="grx has no option block_size: its options are float32_scores"):
        run(np.zeros((9, 9, 3)), "grx", options={"block_size": 4})
    with pytest.raises(FencliError, match="--tile must be >= 0"):
        run(np.ones((9, 9, 3)), tile=-1)


def test_streamed_passes_refuse_nan_and_constant_cubes():
    cube = planted_scene(12, 11, 4, seed=1)[0]
    cube[3, 4, 2] = np.nan
    with pytest.raises(FencliError, match="the scene has NaN/Inf values; pass --nan fill"):
        run(cube, tile=5)
    with pytest.raises(FencliError, match="constant"):
        run(np.full((9, 9, 3), 2.0), tile=5)


def test_cubes_pickle_as_handles_that_reopen_their_file(tmp_path):
    cube = planted_scene(10, 9, 5, seed=2)[0]
    np.save(tmp_path / "c.npy", cube)
    raw = engine.open_cube(tmp_path / "c.npy")
    assert isinstance(raw, RawCube)
    blob = pickle.dumps(raw)
    assert len(blob) < 1000  # the path, not the data
    np.testing.assert_array_equal(pickle.loads(blob).window(2, 7, 1, 8), cube[2:7, 1:8])


def test_tiled_slrx_equals_detectors_slrx(scene):
    from fencli import detectors as det

    cube, gt = scene
    whole = det.slrx(cube[..., :B], block_size=4)
    got = run(cube, "slrx", bands=B, options={"block_size": 4}, tile=9).scores
    np.testing.assert_allclose(got, whole, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("variant", ["plain", "supp"])
def test_onnx_session_tiles_equal_its_whole_scene_enhance(scene, tmp_path, variant):
    pytest.importorskip("torch", reason=NEEDS_TORCH)
    from export import onnx_export
    from fencli import runtime

    path = onnx_export.export_model(random_fen(seed=2, variant=variant), tmp_path / f"fen-{variant}.onnx")
    session = runtime.get_session(path, "cpu", 1)
    cube = scene[0]
    whole = session.enhance(cube)
    with create_raw(tmp_path / "y.npy", (*cube.shape[:2], B)) as out:
        enhance(cube, session, tile=7, out=out)
    y = np.load(tmp_path / "y.npy")
    assert np.abs(y - whole).max() <= 1e-5 * np.abs(whole).max()
    # what Dask ships: the session and its tile FEN pickle as handles that reload the model
    assert pickle.loads(pickle.dumps(session)) is session
    x = fen_input(cube[:9, :8, :B])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(session.tile_fen()))(x), session.tile_fen()(x))


@pytest.mark.shared
def test_shared_tiled_fe_grx_matches_whole_scene_and_reference_auc(shared, auc_reference, tmp_path_factory,
                                                                   method="grx"):
    """Published 200bands-supp checkpoint through ONNX, abu-airport-1 in 37-px tiles (norm folded)."""
    pytest.importorskip("torch", reason=NEEDS_TORCH)
    from export import onnx_export
    from fencli import detectors as det
    from fencli import runtime
    from conftest import load_shared_scene

    path = tmp_path_factory.getbasetemp() / "ferd-200-supp.onnx"
    if not path.exists():
        onnx_export.export_checkpoint(shared / "ferd-checkpoints" / "200bands-supp", path)
    session = runtime.get_session(path, "cpu")
    cube, gt = load_shared_scene("abu-airport-1")
    tiled = run(cube, method, enhancer=session, tile=37).scores
    whole = getattr(det, method)(session.enhance(cube))
    assert np.abs(tiled - whole).max() <= engine.TILED_RTOL["supp"] * np.abs(whole).max()
    ref = auc_reference["abu-airport-1"]["ferd-200-supp"][f"FE+{method.upper()}"]["auc"]
    assert abs(roc_auc(tiled, gt) - ref) < 2e-4
