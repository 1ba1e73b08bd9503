"""The pruned FERD inference network: the Feature Enhancement Network (FEN).

Exactly ``reference/ferd_architecture.md``: ConvH (reflect pad 4, 1x1 conv B->64, no bias),
Wide-ResNet-101-2 ``layer1``, crop 4, head (1x1 256->h, ReLU, 1x1 h->B, ReLU), residual, and for
the ``supp`` variant a division by the Frobenius norm. Attribute names equal the published
checkpoint keys (``convh``, ``layer1``, ``conv1``, ``conv2``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .resnet import wide_resnet101_2_layers

PAD = 4
Variant = Literal["plain", "supp"]


def head_width_for(bands: int) -> int:
    """The reference's rule for the head's hidden width."""
    return 256 if bands > 128 else 128


class FEN(nn.Module):
    """Feature Enhancement Network: ``N x B x H x W`` in [-0.1, 0.1] -> enhanced ``N x B x H x W``."""

    def __init__(self, bands: int, head_width: int | None = None, variant: Variant = "plain") -> None:
        super().__init__()
        if variant not in ("plain", "supp"):
            raise ValueError(f"variant must be 'plain' or 'supp', not {variant!r}")
        self.bands = bands
        self.head_width = head_width or head_width_for(bands)
        self.variant = variant
        self.convh = nn.Conv2d(bands, 64, 1, bias=False)
        self.layer1 = wide_resnet101_2_layers(upto=1)["layer1"]
        self.conv1 = nn.Conv2d(256, self.head_width, 1)
        self.conv2 = nn.Conv2d(self.head_width, bands, 1)

    def forward(self, x: Tensor) -> Tensor:
        # ConvH is pointwise, so it commutes with the reflect pad: applying it first is exact and
        # spends its B x 64 multiply-adds on H x W pixels instead of (H+8) x (W+8).
        f = F.pad(self.convh(x), (PAD, PAD, PAD, PAD), mode="reflect")
        return self.finish(self.layer1(f)[:, :, PAD:-PAD, PAD:-PAD], x)

    def head(self, f: Tensor) -> Tensor:
        """1x1 256 -> h, ReLU, 1x1 h -> B, ReLU (also the training network's classifier head)."""
        return F.relu(self.conv2(F.relu(self.conv1(f))))

    def finish(self, f: Tensor, x: Tensor) -> Tensor:
        """Head on the cropped layer1 features, residual, and the ``supp`` variant's norm."""
        y = self.head(f) + x
        if self.variant == "supp":
            # The reference runs one scene at a time; per-sample norms keep a batch equal to that.
            # A float32 sum of ~1e6 squares is off by ~1e-5 relative, differently in every backend:
            # summing in float64 makes PyTorch and ONNX Runtime agree to float32 rounding.
            norm = torch.linalg.vector_norm(y.double(), dim=(1, 2, 3), keepdim=True)
            y = y / norm.to(y.dtype)
        return y
