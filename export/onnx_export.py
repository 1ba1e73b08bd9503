"""Export a :class:`FEN` to ONNX with the metadata ``fencli.runtime`` needs, and prove parity.

The graph takes ``x: N x B x H x W`` float32 (dynamic N, H, W) and returns ``y`` of the same
shape. ``metadata_props`` carry what a user needs to feed it correctly, so the runtime never
guesses: ``format`` (``fencli-fen/1``), ``bands``, ``variant``, ``head_width``, ``preprocessing``
(JSON), ``source``, ``source_sha256`` (sha256 of ``convh.pt``, ``enc.pt``, ``pc.pt`` concatenated
in that order), ``fencli_version``, ``input_name`` and ``output_name``.

Every export is checked with ``onnx.checker`` and run once in ONNX Runtime against the PyTorch
model on a random input before it is written (atomically).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import fencli
from .checkpoint import checkpoint_sha256, default_variant, load_checkpoint
from .fen import FEN, PAD, Variant
from fencli.errors import FencliError
from fencli.models import registry
from fencli.runtime import FORMAT, expected_preprocessing

OPSET = 18
INPUT, OUTPUT = "x", "y"
PARITY_TOL = 1e-5


class TrimmedFEN(nn.Module):
    """The same function as ``fen`` with 9% fewer FLOPs: what is exported by default.

    The FEN's output keeps only pixels 4 or more from the padded border, and three 3x3 convs reach 3
    pixels, so the zero padding inside ``layer1`` never touches them. Reflect-padding by 3 and
    running the 3x3 convs unpadded (cropping each skip by 1 to match) gives the identical result
    while computing ``layer1`` on 106/104/102 px instead of 108 px squares, and needs no final crop.
    """

    def __init__(self, fen: FEN) -> None:
        super().__init__()
        self.fen = fen

    def forward(self, x: Tensor) -> Tensor:
        m = self.fen
        return m.finish(trimmed_layer1(m.layer1, m.convh(x)), x)


def trimmed_layer1(layer1: nn.Module, f: Tensor) -> Tensor:
    """``crop4(layer1(reflect_pad4(f)))`` computed as :class:`TrimmedFEN` explains: same values, 9% fewer FLOPs.

    Each block has one 3x3 conv, reaching its dilation in pixels (1 in FERD), so the reflect pad is
    the blocks' :func:`receptive_radius` (3 for FERD's ``layer1``; the adaptive core's own, issue 24)."""
    radius = receptive_radius(layer1)
    if not 1 <= radius <= PAD:
        raise ValueError(f"layer1 reaches {radius} px: the FEN's pad of {PAD} covers 1 to {PAD}")
    f = F.pad(f, (radius,) * 4, mode="reflect")
    for block in layer1:
        d = block.conv2.dilation[0]
        skip = f if block.downsample is None else block.downsample(f)
        out = F.relu(block.bn1(block.conv1(f)))
        out = F.relu(block.bn2(F.conv2d(out, block.conv2.weight, dilation=d, groups=block.conv2.groups)))
        f = F.relu(block.bn3(block.conv3(out)) + skip[:, :, d:-d, d:-d])
    return f


def receptive_radius(layer1: nn.Module) -> int:
    """Pixels ``layer1`` reaches on each side: the sum of its 3x3 convs' dilations."""
    return sum(block.conv2.dilation[0] for block in layer1)


def _to_onnx_model(model: FEN, dynamo: bool, trim: bool = True):
    import onnx

    example = torch.zeros(1, model.bands, 16, 16)
    if trim:
        model = TrimmedFEN(model).eval()
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")
        if dynamo:
            from torch.export import Dim

            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=OPSET, input_names=[INPUT],
                output_names=[OUTPUT], dynamic_shapes={"x": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}},
                optimize=True, verbose=False)
            return program.model_proto
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fen.onnx"
            axes = {0: "batch", 2: "height", 3: "width"}
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT], output_names=[OUTPUT], do_constant_folding=True,
                              dynamic_axes={INPUT: axes, OUTPUT: axes})
            return onnx.load(str(path))


def max_rel_diff(got: np.ndarray, ref: np.ndarray) -> float:
    """The parity measure: max |got - ref| / max |ref|."""
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def check_parity(model: FEN, onnx_bytes: bytes, shape: tuple[int, int, int] = (2, 23, 19),
                 seed: int = 0) -> float:
    """Run ONNX Runtime and PyTorch on one random input in [-0.1, 0.1]; returns the parity measure."""
    import onnxruntime as ort

    n, h, w = shape
    x = np.random.default_rng(seed).uniform(-0.1, 0.1, (n, model.bands, h, w)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return max_rel_diff(sess.run(None, {INPUT: x})[0], ref)


def export_model(model: FEN, out: str | Path, *, source: str = "", source_sha256: str = "",
                 force: bool = False, dynamo: bool = False, trim: bool = True,
                 extra: dict[str, str] | None = None) -> Path:
    """Write ``model`` as ONNX to ``out`` (atomically; an existing file needs ``force``).

    ``dynamo`` picks torch.onnx's dynamo exporter over the TorchScript one (about 8x slower to
    export; ``benchmarks/bench_fen.py`` times both graphs); ``trim`` exports :class:`TrimmedFEN`.
    ``extra`` adds metadata (a trained model's recipe, data and steps); it cannot replace the above.
    """
    import onnx

    out = Path(out)
    if out.exists() and not force:
        raise FencliError(f"{out} exists: pass --force to overwrite it")
    model = model.eval()
    proto = _to_onnx_model(model, dynamo, trim)
    meta = {
        "format": FORMAT, "bands": str(model.bands), "variant": model.variant,
        "head_width": str(model.head_width),
        "preprocessing": json.dumps(expected_preprocessing(model.bands), sort_keys=True),
        "source": source, "source_sha256": source_sha256, "fencli_version": fencli.__version__,
        "input_name": INPUT, "output_name": OUTPUT,
    }
    meta = {**(extra or {}), **meta}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.doc_string = "fencli", "FERD Feature Enhancement Network (FEN)"
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    if (diff := check_parity(model, data)) > PARITY_TOL:
        raise FencliError(f"exported model differs from PyTorch by {diff:.2e} (> {PARITY_TOL:g})")
    return write_atomic(out, data)


def write_atomic(out: Path, data: bytes) -> Path:
    """Write ``data`` to ``out`` through a temporary file, so a failure never leaves half a model."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would surprise whoever shares the weights
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def export_checkpoint(folder: str | Path, out: str | Path, variant: Variant | None = None,
                      force: bool = False, torchscript: bool = False, dynamo: bool = False) -> Path:
    """Import a checkpoint folder (published ``.pt`` files, or the TorchScript trio) and export it."""
    from .checkpoint import SCRIPT_FILES, FILES, load_torchscript

    folder = Path(folder)
    variant = variant or default_variant(folder)
    model = (load_torchscript if torchscript else load_checkpoint)(folder, variant)
    sha = checkpoint_sha256(folder, SCRIPT_FILES if torchscript else FILES)
    return export_model(model, out, source=folder.resolve().name, source_sha256=sha,
                        force=force, dynamo=dynamo)


def export_all_shared(dest_dir: str | Path, shared: str | Path | None = None,
                      force: bool = False) -> dict[str, Path]:
    """Export the four published checkpoints of ``../shared`` as ``dest_dir/<name>.onnx``.

    Existing files whose ``source_sha256`` matches the checkpoint are kept unless ``force``.
    ``dest_dir`` must be an ignored folder: these files are never committed.
    """
    import onnx

    default = os.environ.get("FENCLI_SHARED") or Path(__file__).resolve().parents[1].parent / "shared"
    root = Path(shared or default)
    ckpts = root / "ferd-checkpoints"
    if not ckpts.is_dir():
        raise FencliError(f"{ckpts} does not exist")
    dest = Path(dest_dir)
    done = {}
    for name, entry in registry().items():
        if entry.kind != "published":  # fencli's own models ship as ONNX already
            continue
        folder = entry.source
        out = dest / f"{name}.onnx"
        if out.exists() and not force:
            props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
            if (props.get("source_sha256") == checkpoint_sha256(ckpts / folder)
                    and props.get("fencli_version") == fencli.__version__):
                done[name] = out
                continue
        done[name] = export_checkpoint(ckpts / folder, out, force=True)
    return done
