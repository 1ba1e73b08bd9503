"""The PyTorch FEN against an independent NumPy computation; checkpoint and TorchScript import;
ONNX export (metadata, checker, parity on random inputs of awkward shapes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch FEN needs torch (pip install 'fencli[export]')")
onnx = pytest.importorskip("onnx", reason="needs onnx (pip install 'fencli[export]')")

from export.checkpoint import (  # noqa: E402
    checkpoint_sha256, default_variant, load_checkpoint, load_torchscript)
from export.fen import FEN  # noqa: E402
from export.onnx_export import TrimmedFEN, check_parity, export_model, max_rel_diff  # noqa: E402
from fencli.errors import FencliError  # noqa: E402

EPS = 1e-5


def random_fen(bands: int = 12, variant: str = "plain", seed: int = 0, head_width: int | None = None) -> FEN:
    """A FEN with random weights AND random BatchNorm statistics (default BN is the identity, which
    would hide a wrong BN formula)."""
    gen = torch.Generator().manual_seed(seed)
    model = FEN(bands, head_width=head_width, variant=variant)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + 1.5 * torch.rand(t.shape, generator=gen))
            elif name.endswith(("running_mean", ".bias")):
                t.copy_(0.2 * torch.randn(t.shape, generator=gen))
            elif "bn" in name or name.startswith("layer1.0.downsample.1"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            else:  # conv weights: keep activations O(1) through the stack
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    return model.eval()


def save_checkpoint(model: FEN, folder: Path, extra_pc: bool = True) -> Path:
    """Write ``model`` in the published layout: convh.pt / enc.pt / pc.pt (with a conv3 classifier)."""
    folder.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict()
    pick = lambda *prefixes: {k: v for k, v in sd.items() if k.startswith(prefixes)}  # noqa: E731
    pc = pick("conv1.", "conv2.")
    if extra_pc:
        pc |= {"conv3.weight": torch.randn(1, model.bands, 1, 1), "conv3.bias": torch.zeros(1)}
    for name, part in (("convh.pt", pick("convh.")), ("enc.pt", pick("layer1.")), ("pc.pt", pc)):
        torch.save({"state_dict": part}, folder / name)
    return folder


# ---- independent NumPy model -------------------------------------------------------------------

def _np(t) -> np.ndarray:
    return t.detach().double().numpy()


def np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Stride-1 conv of ``C x H x W`` with ``O x C x k x k`` weights, zero padding ``k // 2``."""
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    h, wd = x.shape[1:]
    out = sum(np.einsum("oc,chw->ohw", w[:, :, i, j], xp[:, i:i + h, j:j + wd])
              for i in range(k) for j in range(k))
    return out if b is None else out + b[:, None, None]


def np_bn(x: np.ndarray, sd: dict, prefix: str) -> np.ndarray:
    g, b, m, v = (_np(sd[f"{prefix}.{n}"]) for n in ("weight", "bias", "running_mean", "running_var"))
    return ((x - m[:, None, None]) / np.sqrt(v[:, None, None] + EPS)) * g[:, None, None] + b[:, None, None]


def np_bottleneck(x: np.ndarray, sd: dict, p: str) -> np.ndarray:
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    out = relu(np_bn(np_conv(x, _np(sd[f"{p}.conv1.weight"])), sd, f"{p}.bn1"))
    out = relu(np_bn(np_conv(out, _np(sd[f"{p}.conv2.weight"])), sd, f"{p}.bn2"))
    out = np_bn(np_conv(out, _np(sd[f"{p}.conv3.weight"])), sd, f"{p}.bn3")
    skip = x
    if f"{p}.downsample.0.weight" in sd:
        skip = np_bn(np_conv(x, _np(sd[f"{p}.downsample.0.weight"])), sd, f"{p}.downsample.1")
    return relu(out + skip)


def np_fen(x: np.ndarray, model: FEN) -> np.ndarray:
    """The specification's order: reflect pad 4 FIRST, then ConvH, layer1, crop, head, residual."""
    sd = model.state_dict()
    f = np.pad(x, ((0, 0), (4, 4), (4, 4)), mode="reflect")
    f = np_conv(f, _np(sd["convh.weight"]))
    for i in range(3):
        f = np_bottleneck(f, sd, f"layer1.{i}")
    f = f[:, 4:-4, 4:-4]
    h = np.maximum(np_conv(f, _np(sd["conv1.weight"]), _np(sd["conv1.bias"])), 0)
    y = np.maximum(np_conv(h, _np(sd["conv2.weight"]), _np(sd["conv2.bias"])), 0) + x
    return y / np.linalg.norm(y) if model.variant == "supp" else y


@pytest.mark.parametrize("block", [0, 1])
def test_bottleneck_equals_numpy(block):
    model = random_fen(seed=1)
    x = np.random.default_rng(2).standard_normal((64 if block == 0 else 256, 11, 9))
    with torch.inference_mode():
        got = model.layer1[block](torch.from_numpy(x).float()[None])[0].numpy()
    ref = np_bottleneck(x, model.state_dict(), f"layer1.{block}")
    assert max_rel_diff(got, ref) < 1e-5
    assert (ref == 0).mean() > 0.05  # the final ReLU was exercised


@pytest.mark.parametrize("variant", ["plain", "supp"])
def test_fen_equals_numpy(variant):
    model = random_fen(bands=12, variant=variant, seed=3)
    x = np.random.default_rng(4).uniform(-0.1, 0.1, (12, 13, 10))
    with torch.inference_mode():
        got = model(torch.from_numpy(x).float()[None])[0].numpy()
    ref = np_fen(x, model)
    assert max_rel_diff(got, ref) < 1e-5
    if variant == "supp":
        assert np.linalg.norm(got) == pytest.approx(1.0, rel=1e-6)


def test_supp_norm_is_per_sample():
    model = random_fen(bands=6, variant="supp", seed=5)
    x = torch.empty(2, 6, 8, 9).uniform_(-0.1, 0.1)
    with torch.inference_mode():
        both = model(x)
        one = model(x[1:])
    assert max_rel_diff(both[1:].numpy(), one.numpy()) < 1e-5  # a batch-wide norm fails this


@pytest.mark.parametrize("variant", ["plain", "supp"])
@pytest.mark.parametrize("shape", [(1, 5, 5), (2, 9, 14), (1, 37, 53)])
def test_trimmed_fen_is_the_same_function(variant, shape):
    model = random_fen(bands=7, variant=variant, seed=12)
    x = torch.empty(shape[0], 7, *shape[1:]).uniform_(-0.1, 0.1)
    with torch.inference_mode():
        assert max_rel_diff(TrimmedFEN(model)(x).numpy(), model(x).numpy()) < 1e-5  # float32 rounding


# ---- checkpoint import -------------------------------------------------------------------------

def test_checkpoint_roundtrip_reads_shapes_and_ignores_classifier(tmp_path):
    src = random_fen(bands=9, seed=6)
    folder = save_checkpoint(src, tmp_path / "ckpt")
    model = load_checkpoint(folder)
    assert (model.bands, model.head_width, model.variant) == (9, 128, "plain")
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not model.training
    wide = save_checkpoint(random_fen(bands=140, seed=7), tmp_path / "wide")
    assert load_checkpoint(wide).head_width == 256


def test_variant_rule(tmp_path):
    folder = save_checkpoint(random_fen(bands=5), tmp_path / "200bands-supp")
    assert default_variant(folder) == "supp" and load_checkpoint(folder).variant == "supp"
    assert load_checkpoint(folder, "plain").variant == "plain"
    assert default_variant(tmp_path / "200bands") == "plain"
    assert default_variant(tmp_path / "supplement") == "plain"


def _tamper(folder: Path, file: str, edit) -> None:
    obj = torch.load(folder / file, weights_only=True)
    edit(obj["state_dict"])
    torch.save(obj, folder / file)


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.pop("layer1.1.bn2.running_var"), r"missing layer1\.1\.bn2\.running_var"),
    (lambda sd: sd.__setitem__("layer1.3.conv1.weight", torch.zeros(1)), r"unexpected layer1\.3\.conv1"),
    (lambda sd: sd.__setitem__("layer1.0.conv2.weight", torch.zeros(128, 128, 1, 1)),
     r"mis-shaped layer1\.0\.conv2\.weight \(128, 128, 1, 1\) != \(128, 128, 3, 3\)"),
])
def test_checkpoint_strict_checks(tmp_path, edit, message):
    folder = save_checkpoint(random_fen(bands=4), tmp_path / "c")
    _tamper(folder, "enc.pt", edit)
    with pytest.raises(FencliError, match=message):
        load_checkpoint(folder)


def test_checkpoint_bad_files(tmp_path):
    folder = save_checkpoint(random_fen(bands=4), tmp_path / "c")
    _tamper(folder, "pc.pt", lambda sd: sd.__setitem__("conv2.weight", torch.zeros(5, 128, 1, 1)))
    with pytest.raises(FencliError, match=r"conv2\.weight \(5, 128, 1, 1\) != \(4, 128, 1, 1\)"):
        load_checkpoint(folder)
    (folder / "pc.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FencliError, match="cannot load .*pc.pt"):
        load_checkpoint(folder)
    torch.save({"weights": {}}, folder / "pc.pt")
    with pytest.raises(FencliError, match="not a {'state_dict'"):
        load_checkpoint(folder)
    (folder / "pc.pt").unlink()
    with pytest.raises(FencliError, match="pc.pt is missing"):
        load_checkpoint(folder)
    with pytest.raises(FencliError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_checkpoint_sha256_is_of_the_concatenated_files(tmp_path):
    import hashlib

    folder = save_checkpoint(random_fen(bands=4), tmp_path / "c")
    data = b"".join((folder / f).read_bytes() for f in ("convh.pt", "enc.pt", "pc.pt"))
    assert checkpoint_sha256(folder) == hashlib.sha256(data).hexdigest()


# ---- the authors' TorchScript layout -----------------------------------------------------------

class _CWL(torch.nn.Module):  # reflect pad, then the ConvH 1x1 conv (the authors' order)
    def __init__(self, fen: FEN) -> None:
        super().__init__()
        self.conv = fen.convh

    def forward(self, x):
        return self.conv(torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect"))


class _RNL(torch.nn.Module):
    def __init__(self, fen: FEN) -> None:
        super().__init__()
        self.layer1 = fen.layer1

    def forward(self, x):
        return self.layer1(x)


class _FPL(torch.nn.Module):  # head on the cropped features + residual; second output: classifier
    def __init__(self, fen: FEN) -> None:
        super().__init__()
        self.conv1, self.conv2 = fen.conv1, fen.conv2
        self.conv3 = torch.nn.Conv2d(fen.bands, 1, 1)

    def forward(self, f, x):
        f = f[:, :, 4:-4, 4:-4]
        y = torch.relu(self.conv2(torch.relu(self.conv1(f)))) + x
        return y, torch.sigmoid(self.conv3(y))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_import(tmp_path):
    src = random_fen(bands=10, seed=8)
    folder = tmp_path / "aviris" / "10bands"
    folder.mkdir(parents=True)
    for cls, name in ((_CWL, "cwl_script.pt"), (_RNL, "rnl_script.pt"), (_FPL, "fpl_script.pt")):
        torch.jit.script(cls(src).eval()).save(str(folder / name))
    cwl, rnl, fpl = (torch.jit.load(str(folder / n)) for n in ("cwl_script.pt", "rnl_script.pt", "fpl_script.pt"))
    model = load_torchscript(folder)
    assert (model.bands, model.head_width, model.variant) == (10, 128, "plain")
    x = torch.empty(1, 10, 15, 12).uniform_(-0.1, 0.1)
    with torch.inference_mode():
        expected, _ = fpl(rnl(cwl(x)), x)
        assert max_rel_diff(model(x).numpy(), expected.numpy()) < 1e-5
    torch.jit.script(_CWL(random_fen(bands=11)).eval()).save(str(folder / "cwl_script.pt"))
    with pytest.raises(FencliError, match=r"mis-shaped conv2\.bias \(10,\) != \(11,\)"):
        load_torchscript(folder)


# ---- ONNX export -------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["plain", "supp"])
def exported(request, tmp_path_factory):
    model = random_fen(bands=12, variant=request.param, seed=9)
    path = tmp_path_factory.mktemp("onnx") / f"fen-{request.param}.onnx"
    export_model(model, path, source="synthetic", source_sha256="0" * 64)
    return model, path


def test_export_metadata_and_checker(exported):
    model, path = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["bands"] == "12" and meta["variant"] == model.variant and meta["head_width"] == "128"
    assert json.loads(meta["preprocessing"]) == {
        "select": "first_bands", "bands": 12, "scaling": "global_minmax", "range": [-1.0, 1.0],
        "scale": 0.1, "dtype": "float32", "layout": "NCHW"}
    assert meta["source_sha256"] == "0" * 64 and meta["fencli_version"]
    assert [i.name for i in proto.graph.input] == [meta["input_name"]]
    ops = [n.op_type for n in proto.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 13  # BN folded into the convs
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]  # N, H, W dynamic


@pytest.mark.parametrize("shape", [(1, 32, 32), (1, 80, 100), (1, 37, 53), (2, 21, 17), (1, 5, 5)])
def test_export_parity(exported, shape):
    model, path = exported
    assert check_parity(model, path.read_bytes(), shape, seed=sum(shape)) <= 1e-5


def test_untrimmed_export_parity(tmp_path):
    model = random_fen(bands=9, variant="supp", seed=13)
    path = export_model(model, tmp_path / "m.onnx", trim=False)
    assert check_parity(model, path.read_bytes(), (2, 37, 53)) <= 1e-5


def test_export_refuses_overwrite(exported, tmp_path):
    model, path = exported
    with pytest.raises(FencliError, match="exists"):
        export_model(model, path)
