"""Build the adaptive FEN's core, ``weights/adaptive-core.onnx``: ``python -m export.adaptive [OUT] [--force]``.

The core is the whole FEN with its two band-count-dependent layers taken as graph inputs: it reads
``x`` (``N x B x H x W``), ``convh`` (``64 x B x 1 x 1``), ``w_out`` (``B x 128 x 1 x 1``, the head width) and ``b_out``
(``B``) and computes ConvH, the first :data:`BLOCKS` Wide-ResNet blocks of ``layer1`` on a reflect pad
of their receptive radius (one pixel per block: the same function as FERD's reflect pad 4 / crop 4),
the head's ``1x1 256 -> 128`` + ReLU, the ``128 -> B`` output conv + ReLU and the residual. Its stored
weights (those blocks and the ``256 -> 128`` conv) do not depend on B: drawn once with
``torch.manual_seed(SEED)`` by PyTorch's own module initialisation (the issue-11 ablation found random
ones as good as trained ones), the whole three-block ``layer1`` drawn and the first ``BLOCKS`` kept, so
the kept weights and the head's first 128 output channels are the ones the three-block core had; eval-mode BatchNorm with fresh
running statistics is the identity up to ``1/sqrt(1 + eps)``. No published weight enters it.

One block, not three (issue 24): the last two blocks cost two thirds of the core's multiply-adds and
measured nothing on the shared scenes (README, "The adaptive FEN"). Head width 128, not FERD's 256 for
B > 128 (its 128 for B <= 128, for every B; the fen2 follow-up): level on the shared scenes, better on
many small dense targets, 12% fewer multiply-adds (``benchmarks/fen_variants.py``). The metadata's
``receptive_radius`` (= the block count) is the halo a tiled run needs. ``fencli.adaptive`` computes the per-scene ``convh`` and the seeded output layer in
NumPy; running them inside the graph keeps the whole forward pass in one ONNX Runtime call.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import fencli
from .onnx_export import OPSET, max_rel_diff, receptive_radius, trimmed_layer1, write_atomic
from .resnet import wide_resnet101_2_layers
from fencli.adaptive import CORE_INPUTS, CORE_NAME, CORE_OUTPUT, HEAD_WIDTH, output_layer
from fencli.convh import CONVH_WIDTH
from fencli.errors import FencliError
from fencli.models import REPO_WEIGHTS
from fencli.runtime import CORE_FORMAT

SEED = 0
BLOCKS = 1  # Wide-ResNet blocks of layer1 kept (FERD's FEN has 3)
DILATION = 1  # of their 3x3 convs (FERD: 1); receptive radius = BLOCKS * DILATION
INIT = "pytorch-default"  # nn.Conv2d / nn.BatchNorm2d defaults, no re-initialisation
COMMAND = "python -m export.adaptive --force"


class AdaptiveCore(nn.Module):
    """The FEN with ConvH and the output layer as inputs: ``(x, convh, w_out, b_out) -> y``, any B."""

    def __init__(self, seed: int = SEED, blocks: int = BLOCKS, dilation: int = DILATION, groups: int = 1,
                 orthogonal: bool = False, head_width: int = HEAD_WIDTH) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layer1 = wide_resnet101_2_layers(upto=1)["layer1"][:blocks]  # all 3 drawn: same weights
        self.conv1 = nn.Conv2d(256, 256, 1)  # drawn at FERD's 256 (the same draws), its first head_width kept
        if head_width != 256:
            head = nn.Conv2d(256, head_width, 1)  # PyTorch's default init depends on fan_in (256) only
            with torch.no_grad():
                head.weight.copy_(self.conv1.weight[:head_width])
                head.bias.copy_(self.conv1.bias[:head_width])
            self.conv1 = head
        for block in self.layer1:
            if groups != 1:  # drawn after the head: every other weight stays the same
                c = block.conv2.in_channels
                block.conv2 = nn.Conv2d(c, c, 3, padding=1, groups=groups, bias=False)
            block.conv2.dilation, block.conv2.padding = (dilation, dilation), (dilation, dilation)
        if orthogonal:  # a comparison: orthogonal draws at the default init's expected Frobenius norm
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, nn.Conv2d):
                        out_c, fan = m.weight.shape[0], m.weight[0].numel()
                        nn.init.orthogonal_(m.weight)
                        m.weight.mul_(math.sqrt(out_c / (3 * min(out_c, fan))))

    def forward(self, x: Tensor, convh: Tensor, w_out: Tensor, b_out: Tensor) -> Tensor:
        g = F.relu(self.conv1(trimmed_layer1(self.layer1, F.conv2d(x, convh))))
        return F.relu(F.conv2d(g, w_out, b_out)) + x


def example_inputs(bands: int, shape: tuple[int, int, int], seed: int,
                   head_width: int = HEAD_WIDTH) -> tuple[np.ndarray, ...]:
    """Random ``(x, convh, w_out, b_out)`` float32 for tracing and the parity check."""
    rng = np.random.default_rng(seed)
    n, h, w = shape
    x = rng.uniform(-0.1, 0.1, (n, bands, h, w)).astype(np.float32)
    convh = rng.normal(0, 1, (CONVH_WIDTH, bands, 1, 1)).astype(np.float32)
    weight, bias = output_layer(bands, head_width)
    return x, convh, weight[:, :, None, None], bias


def build(out: Path, force: bool = False, seed: int = SEED, blocks: int = BLOCKS, dilation: int = DILATION,
          groups: int = 1, orthogonal: bool = False, head_width: int = HEAD_WIDTH) -> Path:
    """Export the seeded core to ``out`` with its metadata, after an ONNX Runtime parity check."""
    import onnx
    import onnxruntime as ort

    if out.exists() and not force:
        raise FencliError(f"{out} exists: pass --force to overwrite it")
    model = AdaptiveCore(seed, blocks, dilation, groups, orthogonal, head_width).eval()
    nbhw = {0: "batch", 1: "bands", 2: "height", 3: "width"}
    axes = {"x": nbhw, "convh": {1: "bands"}, "w_out": {0: "bands"}, "b_out": {0: "bands"}, CORE_OUTPUT: nbhw}
    tmp = out.with_name(f".{out.name}.export")
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")
        example = tuple(torch.from_numpy(a) for a in example_inputs(7, (1, 16, 16), seed, head_width))
        torch.onnx.export(model, example, str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=list(CORE_INPUTS), output_names=[CORE_OUTPUT],
                          do_constant_folding=True, dynamic_axes=axes)
    try:
        proto = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    meta = {"format": CORE_FORMAT, "width": str(CONVH_WIDTH), "head_width": str(head_width),
            "seed": str(seed), "init": INIT, "fencli_version": fencli.__version__,
            "blocks": str(blocks), "dilation": str(dilation), "receptive_radius": str(receptive_radius(model.layer1)),
            "inputs": ",".join(CORE_INPUTS), "output_name": CORE_OUTPUT, "command": COMMAND}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "fencli"
    proto.doc_string = (f"fencli adaptive FEN core: seeded random Wide-ResNet layer1 ({blocks} block(s)) + head "
                        "(no published weights)")
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for bands in (3, 64, 130):  # any band count: the B-dependent weights are inputs
        arrays = example_inputs(bands, (2, 23, 19), seed, head_width)
        with torch.inference_mode():
            ref = model(*(torch.from_numpy(a) for a in arrays)).numpy()
        got = sess.run(None, dict(zip(CORE_INPUTS, arrays)))[0]
        if (diff := max_rel_diff(got, ref)) > 1e-5:
            raise FencliError(f"exported core differs from PyTorch by {diff:.2e} at {bands} bands")
    return write_atomic(out, data)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m export.adaptive", description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", type=Path, default=REPO_WEIGHTS / f"{CORE_NAME}.onnx")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--blocks", type=int, default=BLOCKS, help="layer1 blocks (the comparisons; shipped: %(default)s)")
    ap.add_argument("--dilation", type=int, default=DILATION, help="of the 3x3 convs (shipped: %(default)s)")
    ap.add_argument("--groups", type=int, default=1, help="of the 3x3 convs (128: depthwise; shipped: 1)")
    ap.add_argument("--orthogonal", action="store_true", help="orthogonal draws (a comparison; shipped: no)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--head-width", type=int, default=HEAD_WIDTH, help="the head's 256 -> N (shipped: %(default)s)")
    a = ap.parse_args()
    print(json.dumps({"core": str(build(a.out, force=a.force, seed=a.seed, blocks=a.blocks, dilation=a.dilation,
                                        groups=a.groups, orthogonal=a.orthogonal,
                                        head_width=a.head_width))}))
