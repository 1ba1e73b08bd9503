"""Build the adaptive FEN's core, ``weights/adaptive-core.onnx``: ``python -m export.adaptive [OUT] [--force]``.

The core is the part of the FEN that does not depend on the band count: reflect pad 4, Wide-ResNet
``layer1``, crop 4, the head's ``1x1 256 -> 256`` and its ReLU. Its weights are random, drawn once
with ``torch.manual_seed(SEED)`` by PyTorch's own module initialisation (what the issue-11 ablation
found as good as trained weights); eval-mode BatchNorm with fresh running statistics is the
identity up to ``1/sqrt(1 + eps)``. No published weight enters it. ``fencli.adaptive`` supplies the
per-scene ConvH in front of it and the ``256 -> B`` output layer after it, in NumPy.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import fencli
from export.onnx_export import OPSET, max_rel_diff, trimmed_layer1, write_atomic
from export.resnet import wide_resnet101_2_layers
from fencli.adaptive import CORE_NAME, HEAD_WIDTH
from fencli.convh import CONVH_WIDTH
from fencli.errors import FencliError
from fencli.models import REPO_WEIGHTS
from fencli.runtime import CORE_FORMAT

SEED = 0
INIT = "pytorch-default"  # nn.Conv2d / nn.BatchNorm2d defaults, no re-initialisation
INPUT, OUTPUT = "f", "g"
COMMAND = "python -m export.adaptive --force"


class AdaptiveCore(nn.Module):
    """``N x 64 x H x W`` (ConvH output) -> ``N x 256 x H x W``: layer1 on the reflect-padded map, crop, 1x1 + ReLU."""

    def __init__(self, seed: int = SEED) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layer1 = wide_resnet101_2_layers(upto=1)["layer1"]
        self.conv1 = nn.Conv2d(256, HEAD_WIDTH, 1)

    def forward(self, f: Tensor) -> Tensor:
        return F.relu(self.conv1(trimmed_layer1(self.layer1, f)))


def build(out: Path, force: bool = False, seed: int = SEED) -> Path:
    """Export the seeded core to ``out`` with its metadata, after an ONNX Runtime parity check."""
    import onnx
    import onnxruntime as ort

    if out.exists() and not force:
        raise FencliError(f"{out} exists: pass --force to overwrite it")
    model = AdaptiveCore(seed).eval()
    axes = {0: "batch", 2: "height", 3: "width"}
    tmp = out.with_name(f".{out.name}.export")
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, CONVH_WIDTH, 16, 16),), str(tmp), dynamo=False,
                          opset_version=OPSET, input_names=[INPUT], output_names=[OUTPUT],
                          do_constant_folding=True, dynamic_axes={INPUT: axes, OUTPUT: axes})
    try:
        proto = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    meta = {"format": CORE_FORMAT, "width": str(CONVH_WIDTH), "head_width": str(HEAD_WIDTH),
            "seed": str(seed), "init": INIT, "fencli_version": fencli.__version__,
            "input_name": INPUT, "output_name": OUTPUT, "command": COMMAND}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "fencli"
    proto.doc_string = "fencli adaptive FEN core: seeded random Wide-ResNet layer1 + 1x1 head conv (no published weights)"
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    x = np.random.default_rng(seed).uniform(-0.1, 0.1, (2, CONVH_WIDTH, 23, 19)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {INPUT: x})[0]
    if (diff := max_rel_diff(got, ref)) > 1e-5:
        raise FencliError(f"exported core differs from PyTorch by {diff:.2e}")
    return write_atomic(out, data)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--force"]
    target = Path(args[0]) if args else REPO_WEIGHTS / f"{CORE_NAME}.onnx"
    print(json.dumps({"core": str(build(target, force="--force" in sys.argv[1:]))}))
