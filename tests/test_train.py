"""FERD training network and ``fencli train``: shapes against the specification, a CPU smoke run,
exact resume, anomaly-free crops, and the exported FEN.

The whole network is ~170 M parameters even for tiny inputs: runs use batch 2 and 16 x 16 crops.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from export.data import CropSampler, TrainScene, clean_origins, collect_files, load_scene  # no torch
from export.run import TrainConfig, check_recipe  # no torch
from fencli.detectors import RXStats
from fencli.errors import FencliError
from conftest import planted_scene

try:  # the train extra: the FERD network, its training and the ferd recipe's CLI checks need it; the
    # crops, the data layout and the adaptive recipe do not, and run on a runtime-only install
    import torch
except ImportError:
    torch = None
else:
    from export.ferd import FERD, ferd_loss
    from export.fen import FEN
    from export.train import build_model, train
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch (pip install 'fencli[train]')")

BANDS = 12


def _write_scene(path: Path, seed: int, h: int = 40, w: int = 48, n: int = 6) -> Path:
    cube, gt = planted_scene(h=h, w=w, bands=BANDS + 3, n_anomalies=n, seed=seed)
    scipy.io.savemat(path, {"data": cube, "map": gt})
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("scenes")
    return {"bg": _write_scene(d / "bg.mat", 1), "val": _write_scene(d / "val.mat", 2, n=8)}


def _cfg(scenes: dict[str, Path], out: Path, **kw) -> TrainConfig:
    base = dict(data=[str(scenes["bg"])], bands=BANDS, out=str(out), val=[str(scenes["val"])], crop=16,
                batch_size=2, epochs=1, steps_per_epoch=2, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def net() -> FERD:
    """One network for the tests that do not train it (building one costs seconds)."""
    torch.manual_seed(0)
    return FERD(bands=BANDS)


# --- architecture --------------------------------------------------------------------------
@needs_torch
def test_every_stage_has_the_specified_shape_for_a_64_crop(net: FERD) -> None:
    net.eval()
    x = torch.rand(1, BANDS, 64, 64) * 0.2 - 0.1
    with torch.no_grad():
        out = net(x)
        z = net.ocbe(*out.enc)
    assert [tuple(f.shape[1:]) for f in out.enc] == [(256, 72, 72), (512, 36, 36), (1024, 18, 18)]
    assert tuple(z.shape[1:]) == (2048, 9, 9)
    assert [tuple(f.shape[1:]) for f in out.dec] == [(256, 72, 72), (512, 36, 36), (1024, 18, 18)]
    assert tuple(out.recon.shape[1:]) == (BANDS, 64, 64)
    assert tuple(out.logit.shape[1:]) == (1, 64, 64)
    # the upsampling blocks: 2x2 stride-2 transposed convs in conv2 and the skip of each stage's first block
    for stage in (net.decoder.layer1, net.decoder.layer2, net.decoder.layer3):
        first = stage[0]
        assert isinstance(first.conv2, torch.nn.ConvTranspose2d) and first.conv2.stride == (2, 2)
        assert isinstance(first.downsample[0], torch.nn.ConvTranspose2d) and first.downsample[0].kernel_size == (2, 2)
    assert [len(s) for s in (net.decoder.layer1, net.decoder.layer2, net.decoder.layer3)] == [3, 4, 6]
    assert [len(getattr(net, f"layer{i}")) for i in (1, 2, 3)] == [3, 4, 23]
    # the FEN is the pruned part: same ConvH/layer1/head, and head(enc) + x is its output
    with torch.no_grad():
        np.testing.assert_allclose(net.fen()(x).numpy(), (out.enhanced + x).numpy(), rtol=1e-5, atol=1e-6)


@needs_torch
def test_crop_must_be_a_multiple_of_8(net: FERD) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        net(torch.zeros(1, BANDS, 20, 20))


@needs_torch
def test_teacher_stays_frozen_and_in_eval_mode(net: FERD) -> None:
    net.train()
    assert not any(m.training for m in (net.layer1, net.layer2, net.layer3))
    assert net.decoder.training and net.ocbe.training
    trainable = {id(p) for p in net.trainable_parameters()}
    assert not trainable & {id(p) for p in net.teacher_parameters()}
    assert all(not p.requires_grad for p in net.teacher_parameters())
    assert id(net.convh.weight) in trainable and id(net.conv3.weight) in trainable
    net.eval()


@needs_torch
def test_teacher_loads_torchvision_keys_and_refuses_incomplete_ones(net: FERD) -> None:
    original = {k: v.clone() for k, v in net.state_dict().items() if k.startswith(("layer1", "layer2", "layer3"))}
    teacher = {k: v + 1 if v.is_floating_point() else v for k, v in original.items()}
    extra = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 2048)}  # torchvision stem/fc
    assert net.load_teacher({**teacher, **extra}) == len(teacher)
    assert torch.equal(net.layer3[22].conv2.weight, teacher["layer3.22.conv2.weight"])
    del teacher["layer2.0.bn1.running_var"]
    with pytest.raises(KeyError, match="layer2.0.bn1.running_var"):
        net.load_teacher(teacher)
    net.load_teacher(original)


@needs_torch
def test_teacher_layer1_from_a_ferd_enc_pt(tmp_path: Path) -> None:
    torch.manual_seed(5)
    src = FEN(BANDS)
    torch.save({"state_dict": {k: v for k, v in src.state_dict().items() if k.startswith("layer1.")}},
               tmp_path / "enc.pt")
    notes: list[str] = []
    cfg = TrainConfig(data=[], bands=BANDS, out=str(tmp_path), teacher_layer1=str(tmp_path), teacher_depth=3)
    model, teacher = build_model(cfg, notes.append)
    assert torch.equal(model.layer1[0].conv2.weight, src.layer1[0].conv2.weight)
    assert "layer2-3 random" in teacher and any("RANDOM" in n for n in notes)
    with pytest.raises(FencliError, match="no enc.pt"):
        build_model(TrainConfig(data=[], bands=BANDS, out="x", teacher_layer1=str(tmp_path / "nope")), print)


@needs_torch
def test_light_teacher_has_one_pair_and_the_same_fen() -> None:
    torch.manual_seed(0)
    light = FERD(BANDS, depth=1)
    assert not hasattr(light, "layer2") and [len(light.layer1)] == [3]
    x = torch.rand(2, BANDS, 16, 16) * 0.2 - 0.1
    light.eval()
    with torch.no_grad():
        out = light(x)
    assert [tuple(f.shape[1:]) for f in out.enc] == [(256, 24, 24)]
    assert [tuple(f.shape[1:]) for f in out.dec] == [(256, 24, 24)]
    assert tuple(out.recon.shape[1:]) == (BANDS, 16, 16)
    with torch.no_grad():  # the FEN it yields is the same pruned network as the reference's
        np.testing.assert_allclose(light.fen()(x).numpy(), (out.enhanced + x).numpy(), rtol=1e-5, atol=1e-6)
    from torch.utils.flop_counter import FlopCounterMode

    def flops(net: FERD) -> int:
        with FlopCounterMode(display=False) as fc:
            net(torch.zeros(1, BANDS, 32, 32))
        return fc.get_total_flops()

    torch.manual_seed(0)
    assert flops(light) * 5 < flops(FERD(BANDS, depth=3))  # the point of the light recipe
    with pytest.raises(ValueError, match="depth"):
        FERD(BANDS, depth=2)


@needs_torch
def test_pca_init_sets_convh_to_the_background_principal_directions(scenes: dict[str, Path]) -> None:
    from export.train import PCA_INIT_NORM, init_convh_pca

    sc = load_scene(scenes["bg"], BANDS)
    torch.manual_seed(0)
    model = FERD(BANDS, depth=1)
    init_convh_pca(model, [sc])
    w = model.convh.weight.detach().numpy()[:, :, 0, 0].astype(np.float64)
    assert w.shape == (64, BANDS)
    assert np.linalg.norm(w) == pytest.approx(math.sqrt(64 / 3), rel=1e-5) == pytest.approx(PCA_INIT_NORM)
    assert np.count_nonzero(np.abs(w).sum(1) > 0) == BANDS  # 12 directions; the other 52 rows zero
    from fencli.preprocess import fen_scale

    x = fen_scale(sc.cube)[~sc.gt]  # anomaly-free pixels only
    top = np.linalg.eigh(np.cov(x.T))[1][:, -1]
    assert abs(float(w[0] @ top)) / np.linalg.norm(w[0]) == pytest.approx(1.0, abs=1e-5)


@needs_torch
def test_default_bands_and_crop_follow_the_data(scenes: dict[str, Path], tmp_path: Path) -> None:
    from export.data import default_crop
    from export.run import default_bands

    assert default_bands([205, 162]) == 100 and default_bands([205]) == 200 and default_bands([60]) == 50
    assert default_bands([15, 30]) == 15  # fewer than every shipped count: all bands of the smallest
    sc = load_scene(scenes["bg"], BANDS)  # 40 x 48 with 6 anomalies
    crop = default_crop([sc])
    assert crop % 8 == 0 and 8 <= crop <= 40
    assert CropSampler([sc], crop).origins and not clean_origins(sc.gt, 40, 48, crop + 8).size
    result = train(_cfg(scenes, tmp_path, crop=None, bands=None, val=[], max_steps=1, batch_size=1))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["bands"] == BANDS + 3 and saved["crop"] == crop and result.steps == 1
    import onnx

    meta = {p.key: p.value for p in onnx.load(result.onnx).metadata_props}
    assert meta["source"] == "fencli train" and meta["steps"] == "1" and meta["seed"] == "3"
    assert json.loads(meta["recipe"])["teacher_depth"] == 1 and len(meta["training_data_sha256"]) == 64


# --- losses and optimisation ---------------------------------------------------------------
@needs_torch
def test_smoke_steps_finite_losses_and_decreasing_on_a_fixed_batch(scenes: dict[str, Path], net: FERD) -> None:
    sampler = CropSampler([load_scene(scenes["bg"], BANDS)], crop=16)
    x = torch.from_numpy(sampler.draw(2, seed=0, step=0)[0])
    net.train()  # trains the shared network: the last test in this file to use it
    opt = torch.optim.Adam(net.trainable_parameters(), lr=0.005, betas=(0.5, 0.999))
    before = [p.detach().clone() for p in (net.convh.weight, net.layer1[0].conv1.weight)]
    totals = []
    for _ in range(5):
        terms = ferd_loss(x, net(x))
        assert all(math.isfinite(v) for v in terms.items().values()), terms.items()
        assert terms.items()["cos"] > 0 and terms.items()["mse"] > 0
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        totals.append(terms.items()["total"])
    # Adam at lr 0.005 on a batch of 2 is not monotone step by step, but it goes down
    assert max(totals[1:]) < totals[0] and totals[-1] < 0.8 * totals[0], totals
    assert not torch.equal(before[0], net.convh.weight)         # ConvH learns (through the frozen teacher)
    assert torch.equal(before[1], net.layer1[0].conv1.weight)  # the teacher does not


@needs_torch
def test_loss_matches_the_reference_formula(net: FERD) -> None:
    net.eval()
    x = torch.rand(2, BANDS, 8, 8) * 0.2 - 0.1
    with torch.no_grad():
        out = net(x)
        terms = ferd_loss(x, out)
        p = torch.sigmoid(out.logit)
        bce_ref = torch.log1p(torch.exp(p)).mean()  # BCE-with-logits(p, 0) = log(1 + e^p)
        cos_ref = sum((1 - torch.nn.functional.cosine_similarity(e.reshape(2, -1), d.reshape(2, -1))).mean()
                      for e, d in zip(out.enc, out.dec))
        mse_ref = ((x - out.recon) ** 2).mean()
        logits = ferd_loss(x, out, bce_on_logits=True)
    assert terms.bce.item() == pytest.approx(bce_ref.item(), rel=1e-6)
    assert terms.bce.item() > math.log(2)  # p > 0 always: the reference's form never reaches log 2
    assert terms.cos.item() == pytest.approx(cos_ref.item(), rel=1e-5)
    assert terms.total.item() == pytest.approx((0.1 * bce_ref + 0.1 * mse_ref + cos_ref).item(), rel=1e-5)
    assert logits.bce.item() == pytest.approx(torch.nn.functional.softplus(out.logit).mean().item(), rel=1e-5)


# --- data ----------------------------------------------------------------------------------
def test_crops_never_include_anomalous_pixels() -> None:
    rng = np.random.default_rng(0)
    gt = rng.random((30, 34)) < 0.02
    crop = 8
    ok = clean_origins(gt, 30, 34, crop)
    naive = [r * (34 - crop + 1) + c for r in range(30 - crop + 1) for c in range(34 - crop + 1)
             if not gt[r:r + crop, c:c + crop].any()]
    assert ok.tolist() == naive and 0 < len(naive) < 27 * 23
    cube = rng.random((30, 34, 5)).astype(np.float32)
    sampler = CropSampler([TrainScene("a", cube, gt), TrainScene("clean", cube[:10, :10], None)], crop)
    seen = set()
    for step in range(40):
        x, where = sampler.draw(4, seed=1, step=step)
        assert x.shape == (4, 5, crop, crop) and np.abs(x).max() <= 0.1 + 1e-6
        for k, r, c in where:
            if k == 0:
                assert not gt[r:r + crop, c:c + crop].any()
            seen.add((k, r, c))
    assert len(seen) > 60  # really random
    np.testing.assert_array_equal(sampler.draw(4, 1, 7)[0], sampler.draw(4, 1, 7)[0])  # (seed, step) fixes it


def test_no_clean_crop_is_a_clear_error() -> None:
    gt = np.zeros((20, 20), bool)
    gt[::6, ::6] = True
    with pytest.raises(FencliError, match="no 16x16 crop free of ground-truth anomalies"):
        CropSampler([TrainScene("dense", np.ones((20, 20, 3), np.float32), gt)], 16)


def test_had100_layout_and_sensor(tmp_path: Path) -> None:
    for sensor in ("aviris_ng", "aviris"):
        (tmp_path / "train" / sensor).mkdir(parents=True)
        for i in range(2):
            np.save(tmp_path / "train" / sensor / f"{sensor}{i}.npy", np.zeros((4, 4, 3), np.float32))
    assert [f.name for f in collect_files([tmp_path])] == ["aviris_ng0.npy", "aviris_ng1.npy"]
    assert len(collect_files([tmp_path], sensor="all")) == 4
    assert [f.name for f in collect_files([tmp_path / "train" / "aviris"])] == ["aviris0.npy", "aviris1.npy"]
    with pytest.raises(FencliError, match="--sensor"):
        collect_files([tmp_path], sensor="hydice")
    with pytest.raises(FencliError, match="no such file"):
        collect_files([tmp_path / "missing"])


# --- the run: resume, checkpoint, ONNX -----------------------------------------------------
@pytest.fixture(scope="module")
def full_run(scenes: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("full")
    return out, train(_cfg(scenes, out))


@needs_torch
def test_resume_continues_the_same_run(scenes: dict[str, Path], full_run, tmp_path: Path) -> None:
    out_full, result = full_run
    assert result.steps == 2 and result.best_epoch == 1 and 0.5 < result.val_auc <= 1
    first = train(_cfg(scenes, tmp_path, max_steps=1))
    assert first.steps == 1
    with pytest.raises(FencliError, match="--resume"):
        train(_cfg(scenes, tmp_path))
    resumed = train(_cfg(scenes, tmp_path), resume=True)
    assert resumed.steps == 2
    a = torch.load(out_full / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 2
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    for (i, sa), sb in zip(a["optimizer"]["state"].items(), b["optimizer"]["state"].values()):
        torch.testing.assert_close(sb["exp_avg_sq"], sa["exp_avg_sq"], rtol=1e-4, atol=1e-10)
        assert float(sb["step"]) == float(sa["step"]) == 2.0
    assert "resume at step 1 of 2" in (tmp_path / "train.log").read_text()


@needs_torch
def test_checkpoint_has_the_published_layout_and_exports_to_onnx(scenes: dict[str, Path], full_run) -> None:
    import onnxruntime as ort

    out, result = full_run
    fen_dir = Path(result.checkpoint)
    convh = torch.load(fen_dir / "convh.pt", weights_only=True)["state_dict"]
    enc = torch.load(fen_dir / "enc.pt", weights_only=True)["state_dict"]
    pc = torch.load(fen_dir / "pc.pt", weights_only=True)["state_dict"]
    assert list(convh) == ["convh.weight"] and convh["convh.weight"].shape == (64, BANDS, 1, 1)
    assert all(k.startswith("layer1.") for k in enc) and "layer1.0.downsample.0.weight" in enc
    assert sorted(pc) == sorted(f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias"))
    assert pc["conv3.weight"].shape == (1, BANDS, 1, 1)

    fen = FEN(BANDS)
    fen.load_state_dict({**convh, **enc, **{k: v for k, v in pc.items() if not k.startswith("conv3")}})
    fen.eval()
    cube, _ = planted_scene(h=21, w=27, bands=BANDS, seed=9)  # odd sizes: dynamic axes
    x = torch.from_numpy(np.ascontiguousarray(cube.transpose(2, 0, 1)[None]) * 0.05)
    with torch.no_grad():
        ref = fen(x).numpy()
    sess = ort.InferenceSession(result.onnx, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert not np.allclose(ref, x.numpy(), atol=1e-4)  # the head contributes: not an identity

    from typer.testing import CliRunner  # the trained FEN is usable as `fencli detect --model`
    import fencli.cli.detect  # noqa: F401  (registers the command)
    from fencli.cli import app

    res = CliRunner().invoke(app, ["detect", str(scenes["val"]), "--model", str(result.onnx), "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output)
    assert row["model"] == Path(result.onnx).stem and row["bands"] == BANDS
    roc_auc_score = pytest.importorskip("sklearn.metrics", reason="needs scikit-learn (dev)").roc_auc_score

    from conftest import rx_reference
    from fencli.io import read_scene
    from fencli.preprocess import fen_input

    val = read_scene(scenes["val"])  # the FE+GRX AUC recomputed here: this ONNX output, textbook RX
    y = sess.run(None, {sess.get_inputs()[0].name: fen_input(np.asarray(val.cube)[..., :BANDS])})[0]
    want = roc_auc_score(val.gt.ravel() != 0, rx_reference(y[0].transpose(1, 2, 0)).ravel())
    assert row["auc"] == pytest.approx(want, abs=1e-6)
    assert result.val_auc == pytest.approx(want, abs=1e-4)  # the run's own validation: the same FEN (one epoch)


# A fresh interpreter in which ``import torch`` fails, as on a runtime-only install.
NO_TORCH = """import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
sys.meta_path.insert(0, _NoTorch())
"""


@pytest.mark.parametrize("case", [  # the ferd recipe's checks run after its torch import; "no torch" runs anywhere
    *(pytest.param(c, marks=needs_torch) for c in ("no scene", "smaller than a crop", "too few bands",
                                                   "out not writable")), "no torch"])
def test_cli_train_bad_input_is_one_line_and_writes_nothing(case: str, scenes: dict[str, Path],
                                                            tmp_path: Path) -> None:
    import subprocess
    import sys

    small = tmp_path / "small.npy"
    np.save(small, planted_scene(h=12, w=12, bands=BANDS, n_anomalies=0, seed=1)[0])
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = tmp_path / "run"
    args = {"no scene": [str(tmp_path / "missing.mat")],
            "smaller than a crop": [str(small), "--crop", "16"],
            "too few bands": [str(scenes["bg"]), "--bands", "300"],
            "out not writable": [str(scenes["bg"])],
            "no torch": [str(scenes["bg"])]}[case]
    if case == "out not writable":
        out = blocker / "run"  # under a file: cannot be created, whoever runs the test
    code = NO_TORCH if case == "no torch" else ""
    code += "from fencli.cli import main; main()"
    res = subprocess.run([sys.executable, "-c", code, "train", *args, "--out", str(out), "--max-steps", "1"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    expect = {"no scene": "missing.mat: no such file", "smaller than a crop": "no 16x16 crop",
              "too few bands": "fewer than the 300 asked", "out not writable": "is not a writable folder",
              "no torch": "pip install 'fencli[train]'"}[case]
    assert expect in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "small.npy"]


@needs_torch
def test_cli_bad_input_is_one_line(scenes: dict[str, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "fencli", "train", str(scenes["bg"]), "--bands", str(BANDS),
           "--crop", "20", "--out", str(tmp_path / "run")]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == ["fencli: error: --crop: the crop side must be a positive "
                                               "multiple of 8, got 20"]


def test_recipe_adaptive_is_the_adaptive_fen_fixed_to_the_training_backgrounds(scenes: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    """No gradient steps: a fixed FEN whose forward pass is the adaptive FEN's with ConvH from the
    pooled anomaly-free pixels; ONNX Runtime runs it as any model, and the anomalies never count."""
    from fencli.adaptive import SceneFen, get_adaptive, scene_convh
    from fencli.preprocess import fen_input, fen_scale
    from fencli.runtime import FENSession

    from export.fixed import build  # what train() runs for this recipe (test_cli_... runs it through the CLI)

    res = build(_cfg(scenes, tmp_path / "run", val=[], recipe="adaptive"))
    assert res.steps == 0 and res.checkpoint == "" and Path(res.onnx).is_file()
    session = FENSession(res.onnx, device="cpu")
    meta = session.session.get_modelmeta().custom_metadata_map
    assert (session.bands, session.info.source, meta["steps"]) == (BANDS, "fencli train", "0")
    bg = load_scene(scenes["bg"], BANDS)
    background = fen_scale(bg.cube)[~bg.gt]
    poisoned = fen_scale(bg.cube).reshape(-1, BANDS)  # the anomalies included: another ConvH
    cube = load_scene(scenes["val"], BANDS).cube
    fixed = session.run(fen_input(cube))
    want = SceneFen(scene_convh(RXStats(BANDS).fit(background), None), get_adaptive("cpu"))(fen_input(cube))
    np.testing.assert_allclose(fixed, want, rtol=0, atol=1e-6 * np.abs(want).max())
    other = SceneFen(scene_convh(RXStats(BANDS).fit(poisoned), None), get_adaptive("cpu"))(fen_input(cube))
    assert np.abs(other - want).max() > 1e-3 * np.abs(want).max()
    with pytest.raises(FencliError, match="--recipe must be one of ferd, adaptive"):
        check_recipe("distill")  # what train() and the CLI call first


@needs_torch
def test_train_runs_the_adaptive_recipe_as_build_and_refuses_unknown_recipes(scenes: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    from export.fixed import build
    from fencli.preprocess import fen_input
    from fencli.runtime import FENSession

    a = train(_cfg(scenes, tmp_path / "a", val=[], recipe="adaptive"))
    b = build(_cfg(scenes, tmp_path / "b", val=[], recipe="adaptive"))
    assert a.steps == b.steps == 0 and a.checkpoint == b.checkpoint == ""
    x = fen_input(load_scene(scenes["val"], BANDS).cube)
    np.testing.assert_array_equal(FENSession(a.onnx, device="cpu").run(x), FENSession(b.onnx, device="cpu").run(x))
    with pytest.raises(FencliError, match="--recipe must be one of ferd, adaptive"):
        train(_cfg(scenes, tmp_path / "bad", recipe="distill"))


TRAIN_WITHOUT_TORCH = NO_TORCH + """from fencli import cli
sys.argv = ["fencli", "train"] + sys.argv[1:]
try:
    cli.main()
finally:
    print("torch" in sys.modules, file=sys.stderr)
"""


def test_recipe_adaptive_needs_no_torch_and_ferd_says_what_is_missing(scenes: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", TRAIN_WITHOUT_TORCH, *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=120)

    res = cli(str(scenes["bg"]), "--bands", str(BANDS), "--recipe", "adaptive", "--out", "run", "--json")
    assert res.returncode == 0 and res.stderr.strip().splitlines()[-1] == "False", res.stderr
    assert json.loads(res.stdout)["steps"] == 0 and (tmp_path / "run" / "fen.onnx").is_file()
    res = cli(str(scenes["bg"]), "--out", "run2")
    assert res.returncode == 2 and not (tmp_path / "run2").exists()
    assert "fencli train needs PyTorch: pip install 'fencli[train]' (or --recipe adaptive)" in res.stderr
