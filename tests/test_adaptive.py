"""The adaptive FEN (``--model adaptive``): any band count, the exact composition of ConvH + core +
output layer, determinism across processes, tiled == whole, the shared scenes' AUC, bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, SCENES, load_shared_scene
from fencli import adaptive
from fencli.detectors import RXStats, grx, slrx
from fencli.errors import FencliError
from fencli.metrics import roc_auc
from fencli.engine import enhance, run
from fencli.preprocess import fen_input
from fencli.enhancers import load_session
from fencli.synthetic import planted_scene
from fencli.tiles import create_raw


@pytest.fixture(scope="module")
def fen() -> adaptive.AdaptiveFEN:
    return load_session("adaptive", device="cpu", threads=1)


def fencli_cli(*args):
    return subprocess.run([sys.executable, "-m", "fencli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("bands", [30, 64, 102, 224])
def test_any_band_count_equals_the_torch_composition(fen, bands):
    """ConvH (the scene's leading directions, one scale) -> seeded core -> seeded output layer, exactly
    as the PyTorch FEN with those weights would compute it (head width 128 for every B)."""
    torch = pytest.importorskip("torch")
    from export.adaptive import AdaptiveCore
    from export.fen import FEN

    cube, _ = planted_scene(11, 9, bands, n_anomalies=2, seed=bands)
    y = fen.enhance(cube)
    assert y.shape == (11, 9, bands) and y.dtype == np.float32
    core = AdaptiveCore(fen.info.seed).eval()
    ref = FEN(bands, head_width=adaptive.HEAD_WIDTH).eval()
    ref.layer1 = ref.layer1[:len(core.layer1)]  # FERD's pad 4 / zero-padded convs / crop 4, the core's blocks
    ref.layer1.load_state_dict(core.layer1.state_dict())
    ref.conv1.load_state_dict(core.conv1.state_dict())
    convh = adaptive.scene_convh(RXStats(bands).fit(cube), (float(cube.min()), float(cube.max())))
    weight, bias = adaptive.output_layer(bands)
    ref.convh.weight.data = torch.from_numpy(convh)[:, :, None, None]
    ref.conv2.weight.data = torch.from_numpy(weight)[:, :, None, None]
    ref.conv2.bias.data = torch.from_numpy(bias)
    with torch.inference_mode():
        want = ref(torch.from_numpy(fen_input(cube)))[0].numpy().transpose(1, 2, 0)
    assert rel(y, want) <= 1e-5
    assert np.abs(y - fen_input(cube)[0].transpose(1, 2, 0)).max() > 1e-3  # the head does something
    rows = min(64, bands)  # orthogonal rows of one norm, zero rows beyond B
    gram = convh[:rows].astype(np.float64) @ convh[:rows].T
    np.testing.assert_allclose(gram, gram[0, 0] * np.eye(rows), atol=1e-5 * gram[0, 0])
    assert not convh[rows:].any()
    f = fen_input(cube)[0].reshape(bands, -1).T @ convh[:rows].T  # the ConvH output on this scene
    assert abs(np.mean(f.astype(np.float64) ** 2) - 1) < 1e-4  # unit mean square per channel


def test_convh_is_the_scenes_own_and_signed_deterministically():
    cube, _ = planted_scene(20, 20, 40, seed=1)
    stats = RXStats(40).fit(cube)
    vrange = (float(cube.min()), float(cube.max()))
    convh = adaptive.scene_convh(stats, vrange).astype(np.float64)
    x = fen_input(cube)[0].reshape(40, -1).astype(np.float64)  # the FEN input, pixels as columns
    top = np.linalg.svd(x, full_matrices=False)[0][:, 0]  # its leading (uncentred) singular vector
    assert abs(abs(convh[0] @ top) / np.linalg.norm(convh[0]) - 1) < 1e-6
    assert convh[0][np.argmax(np.abs(convh[0]))] > 0  # sign: largest entry positive
    shifted = 3 * cube.astype(np.float64) + 100  # other units: same FEN input, same ConvH
    again = adaptive.scene_convh(RXStats(40).fit(shifted), (3 * vrange[0] + 100, 3 * vrange[1] + 100))
    np.testing.assert_allclose(again, convh, rtol=1e-4, atol=1e-6)
    centred = np.linalg.eigh(stats.covariance)[1][:, -1]  # the centred direction is another one here
    assert abs(abs(convh[0] @ centred) / np.linalg.norm(convh[0]) - 1) > 1e-3


def test_output_layer_is_seeded_per_band_count():
    w1, b1 = adaptive.output_layer(30)
    w2, b2 = adaptive.output_layer(30)
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(b1, b2)
    assert w1.shape == (30, 128) and np.abs(w1).max() <= 1 / np.sqrt(128)
    assert not np.array_equal(adaptive.output_layer(31)[0][:30], w1)


DETERMINISM = """
import hashlib, sys
import numpy as np
from fencli.detectors import grx
from fencli.enhancers import load_session
from fencli.synthetic import planted_scene
cube, _ = planted_scene(30, 26, 57, seed=3)
scores = grx(load_session("adaptive", device="cpu").enhance(cube))
print(hashlib.sha256(scores.tobytes()).hexdigest())
"""


def test_two_processes_give_bit_identical_scores(fen):
    digests = {subprocess.run([sys.executable, "-c", DETERMINISM], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, check=True).stdout.strip() for _ in range(2)}
    cube, _ = planted_scene(30, 26, 57, seed=3)
    here = hashlib.sha256(grx(fen.enhance(cube)).tobytes()).hexdigest()
    assert digests == {here}  # two fresh processes and this one: the same bits


@pytest.mark.parametrize("tile", [7, 16])
def test_tiled_enhance_equals_whole(fen, tmp_path, tile):
    cube, _ = planted_scene(29, 23, 70, n_anomalies=4, seed=4)
    whole = fen.enhance(cube)
    with create_raw(tmp_path / "y.npy", cube.shape, np.float32) as out:
        assert enhance(cube, fen, tile=tile, out=out) is None  # streamed to the file
    assert rel(np.load(tmp_path / "y.npy"), whole) <= 1e-6


@pytest.mark.parametrize("method", ["grx", "slrx"])
def test_tiled_detection_equals_whole(fen, tmp_path, method):
    cube, gt = planted_scene(33, 27, 48, n_anomalies=5, seed=6)
    np.save(tmp_path / "c.npy", cube)
    opts = {"block_size": 4} if method == "slrx" else None
    tiled = run(tmp_path / "c.npy", method, enhancer=fen, tile=9, workdir=tmp_path, options=opts)
    whole = run(cube, method, enhancer=fen, gt=gt, options=opts)
    assert tiled.bands == whole.bands == 48
    assert rel(tiled.scores, whole.scores) <= 1e-6
    assert whole.model == "adaptive"


def test_bands_selects_leading_bands(fen):
    cube, gt = planted_scene(20, 20, 50, seed=2)
    res = run(cube, "grx", enhancer=fen, bands=31, gt=gt)
    assert res.bands == 31
    np.testing.assert_array_equal(res.scores, grx(fen.enhance(cube[..., :31])))


def test_refuses_bad_input_clearly(fen):
    cube, _ = planted_scene(20, 20, 30, seed=2)
    with pytest.raises(FencliError, match="at least 2"):
        fen.enhance(cube[..., :1])
    with pytest.raises(FencliError, match="constant"):
        fen.enhance(np.full((10, 10, 30), 7.0, np.float32))
    flat = np.broadcast_to(np.arange(30, dtype=np.float32), (10, 10, 30))
    with pytest.raises(FencliError, match="same spectrum"):
        fen.enhance(flat)
    with pytest.raises(FencliError, match="5 x 5"):
        fen.enhance(cube[:4])


def test_cli_detect_and_enhance(fen, tmp_path):
    from conftest import pair_auc, rx_reference

    cube, gt = planted_scene(24, 22, 45, seed=8)
    np.save(tmp_path / "s.npy", cube)
    np.save(tmp_path / "gt.npy", gt)
    p = fencli_cli("detect", tmp_path / "s.npy", "--gt", tmp_path / "gt.npy", "--model", "adaptive", "--json",
                   "--out", tmp_path / "map.npy")
    assert p.returncode == 0, p.stderr
    row = json.loads(p.stdout)
    assert (row["model"], row["bands"]) == ("adaptive", 45)
    scores = np.load(tmp_path / "map.npy")  # the adaptive FEN's output through textbook RX; its AUC by pairs
    assert rel(scores, rx_reference(fen.enhance(cube))) < 1e-6
    assert row["auc"] == pytest.approx(pair_auc(scores, gt), abs=1e-12) and row["auc"] > 0.9
    p = fencli_cli("enhance", tmp_path / "s.npy", "--model", "adaptive", "--bands", "20", "--json")
    assert p.returncode == 0, p.stderr
    assert {k: json.loads(p.stdout)[k] for k in ("model", "bands")} == {"model": "adaptive", "bands": 20}
    assert np.load(tmp_path / "s_fen.npy").shape == (24, 22, 20)


def test_cli_batch_fits_each_scene(fen, tmp_path):
    """Many scenes (--out-dir, tiled): each scene gets its own ConvH, equal to its whole-scene map."""
    scenes = [planted_scene(18, 21, 26 + 8 * i, seed=20 + i)[0] for i in range(2)]
    for i, cube in enumerate(scenes):
        np.save(tmp_path / f"s{i}.npy", cube)
    p = fencli_cli("detect", tmp_path / "s0.npy", tmp_path / "s1.npy", "--model", "adaptive",
                   "--out-dir", tmp_path / "maps", "--tile", "8", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["scenes"]
    assert [(r["model"], r["bands"]) for r in rows] == [("adaptive", 26), ("adaptive", 34)]
    for i, cube in enumerate(scenes):
        got = np.load(tmp_path / "maps" / f"s{i}.adaptive-grx.npy")
        assert rel(got, grx(fen.enhance(cube))) <= 1e-6


@pytest.mark.parametrize("case", ["constant", "one-band"])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, case):
    cube = np.full((12, 12, 20), 3.0, np.float32) if case == "constant" else planted_scene(12, 12, 20)[0]
    np.save(tmp_path / "s.npy", cube)
    args = ["--bands", "1"] if case == "one-band" else []
    for cmd in ("enhance", "detect"):
        p = fencli_cli(cmd, tmp_path / "s.npy", "--model", "adaptive", *args)
        assert p.returncode == 2, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not (tmp_path / "s_fen.npy").exists()


# A regression guard, not an external reference: fencli's own AUCs (its adaptive FEN with the
# one-block core of issue 24 and the head of 128 of its fen2 follow-up, measured by fencli when the README table was made; one fixed
# configuration, all bands of each scene). A change of ConvH, core, output layer or seeds moves them by
# far more than the tolerance. What the published code measures is ../shared's auc_reference.json,
# which the FERD-checkpoint tests hold instead. (The three-block core measured 0.947046 0.975807
# 0.988306 0.977821 (GRX) and 0.969973 0.982766 0.99381 0.9863 (SLRX); the one-block core with the
# head of 256 0.945295 0.97144 0.989522 0.977244 (GRX) and 0.970146 0.98212 0.994039 0.985769 (SLRX).)
FENCLI_OWN_AUC_REGRESSION_GUARD = {
    "grx": {"abu-airport-1": 0.945349, "abu-airport-2": 0.972016, "hydice": 0.992941, "sandiego": 0.977279},
    "slrx": {"abu-airport-1": 0.971875, "abu-airport-2": 0.982547, "hydice": 0.995586, "sandiego": 0.986702},
}


@pytest.mark.shared
@pytest.mark.parametrize("scene", SCENES)
def test_shared_scene_auc(fen, scene):
    cube, gt = load_shared_scene(scene)
    y = fen.enhance(cube)
    for method, detect in (("grx", grx), ("slrx", slrx)):
        auc, raw = roc_auc(detect(y), gt), roc_auc(detect(cube), gt)
        assert abs(auc - FENCLI_OWN_AUC_REGRESSION_GUARD[method][scene]) < 2e-4, (method, auc)
        assert auc >= raw - 0.01, (method, auc, raw)


def test_dask_engine_equals_whole(fen, tmp_path):
    """Dask workers (other processes) get the scene's ConvH and load the core themselves."""
    pytest.importorskip("distributed")
    from fencli.cluster import DaskExecutor, dask_client

    cube, gt = planted_scene(25, 21, 40, n_anomalies=3, seed=9)
    np.save(tmp_path / "c.npy", cube)
    with dask_client(workers=1, threads=1, processes=True) as client:
        res = run(tmp_path / "c.npy", "grx", enhancer=fen, tile=9, workdir=tmp_path, executor=DaskExecutor(client))
    assert rel(res.scores, run(cube, "grx", enhancer=fen).scores) <= 1e-6


def test_shipped_core_is_what_the_build_command_makes(tmp_path):
    """weights/adaptive-core.onnx holds exactly the weights `python -m export.adaptive` draws (no others)."""
    pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from export.adaptive import build

    def weights(path):
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}

    shipped, rebuilt = weights(adaptive.core_path()), weights(build(tmp_path / "core.onnx"))
    assert shipped.keys() == rebuilt.keys() and len(shipped) >= 5  # one block's 4 convs + the head's
    for name, value in shipped.items():
        np.testing.assert_array_equal(value, rebuilt[name])


def test_models_lists_the_adaptive_fen_as_embedded():
    res = subprocess.run([sys.executable, "-m", "fencli", "models", "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    listed = {m["name"]: m for m in json.loads(res.stdout)["models"]}
    assert listed["adaptive"]["kind"] == "embedded" and listed["adaptive"]["installed"] is True
    assert listed["adaptive"]["min_bands"] == 2 and listed["adaptive"]["path"].endswith("adaptive-core.onnx")


# --- issue 24: a third of the cost, and the halo follows the model ----------------------------------
THREE_BLOCK_MACS = 696_320  # the three-block core's Conv weights per pixel (layer1 630,784 + head 65,536)


def test_core_and_fixed_models_cost_at_most_045x_the_three_block_ones():
    """Multiply-adds per pixel = the graph's Conv weights (benchmarks/fen_macs.py): the core alone, and
    each fixed fencli-B model (its ConvH and output layer included) against the three-block build."""
    pytest.importorskip("onnx")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fen_macs import conv_macs

    from fencli.models import REPO_WEIGHTS

    core = conv_macs(adaptive.core_path(), 200)
    assert core["stored"] == 237_568 and core["stored"] <= 0.45 * THREE_BLOCK_MACS  # head 128 (256: 270,336)
    assert core["total"] <= 0.45 * (THREE_BLOCK_MACS + 320 * 200)
    for bands in (50, 100, 200):
        fixed = conv_macs(REPO_WEIGHTS / f"fencli-{bands}.onnx")
        assert fixed["total"] == 237_568 + (64 + 128) * bands <= 0.45 * (THREE_BLOCK_MACS + 320 * bands)


def test_halo_is_the_models_receptive_radius():
    from fencli.models import registry
    from fencli.tiles import FEN_HALO, fen_halo

    fen = load_session("adaptive", device="cpu")
    assert fen.info.receptive_radius == fen.halo == fen_halo(fen) == 1  # one 3x3 conv
    for name in (e.name for e in registry().values() if e.kind == "embedded"):
        assert fen_halo(load_session(name, device="cpu")) == 1  # frozen from the core: its metadata
    assert fen_halo(object()) == FEN_HALO == 4  # an enhancer that states nothing: FERD's full halo


def test_published_models_keep_their_full_halo(tmp_path):
    """A FERD-style FEN (three blocks) exported without a stated radius gets FEN_HALO."""
    pytest.importorskip("torch")
    from export.fen import FEN
    from export.onnx_export import export_model
    from fencli.runtime import get_session
    from fencli.tiles import FEN_HALO, fen_halo

    path = export_model(FEN(12), tmp_path / "f.onnx")
    assert get_session(path, "cpu").info.receptive_radius is None
    assert fen_halo(get_session(path, "cpu")) == FEN_HALO


@pytest.mark.parametrize("tile", [5, 8])
def test_tiled_equals_whole_with_the_models_own_halo(fen, tmp_path, monkeypatch, tile):
    """Tiles with the model's halo (1 px) give the whole-scene output (README tolerance 1e-6); a halo
    of 0 does not (the test can fail)."""
    from fencli import engine
    from fencli.tiles import fen_halo

    cube, _ = planted_scene(29, 23, 40, n_anomalies=4, seed=11, texture=0.3)
    whole = fen.enhance(cube)

    def tiled(halo=None):
        if halo is not None:
            monkeypatch.setattr(engine, "fen_halo", lambda _: halo)
        with create_raw(tmp_path / f"y{halo}.npy", cube.shape, np.float32) as out:
            enhance(cube, fen, tile=tile, out=out)
        return np.load(tmp_path / f"y{halo}.npy")

    assert fen_halo(fen) == 1
    assert rel(tiled(), whole) <= 1e-6  # the engine's own choice: the model's halo
    assert rel(tiled(0), whole) > 1e-4
