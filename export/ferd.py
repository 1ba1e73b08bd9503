"""The full FERD training network (reverse distillation); the FEN is its pruned inference part.

``reference/ferd_architecture.md``, "Full training network". For a ``c x c`` crop (``c % 8 == 0``)
the reflect-padded input is ``c + 8`` wide; with ``s = c + 8``:

    teacher  ConvH -> layer1 256@s -> layer2 512@s/2 -> layer3 1024@s/4      (frozen, eval mode)
    OCBE     [down(fa), down(fb), fc] 3072@s/4 -> 3 Bottlenecks -> 2048@s/8
    student  1024@s/4 -> 512@s/2 -> 256@s                                     (upsampling stages)
    de-ConvH 1x1 256 -> B, crop 4: B@c (reconstruction)
    classifier  p = sigmoid(conv3(|head(dec) - head(enc)|)) on the cropped 256-channel maps

Attribute names at the top level (``convh``, ``layer1``, ``conv1``, ``conv2``, ``conv3``) equal the
published checkpoint keys, so the FEN's state dict is a subset of this network's; ``layer1..3``
equal torchvision's, so a ``wide_resnet101_2`` ImageNet state dict loads into the teacher.

``depth=1`` is fencli's light recipe: the teacher stops at ``layer1`` (the only stage the FEN keeps),
the bottleneck is one strided conv and one Bottleneck (256@s -> 1024@s/4) and the student has two
upsampling stages back to 256@s; one cosine pair. Same ConvH, layer1, head, classifier and losses,
about a seventh of the reference's FLOPs per crop (``fencli train --teacher-depth 1``, the default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fen import FEN, PAD, head_width_for
from .resnet import Bottleneck, make_layer, wide_resnet101_2_layers

TEACHER_LAYERS = ("layer1", "layer2", "layer3")
LOSS_WEIGHTS = {"bce": 0.1, "mse": 0.1, "cos": 1.0}  # the reference's


def check_crop(crop: int) -> None:
    """The three stride-2 stages and their mirror need the padded side divisible by 8."""
    if crop < 8 or crop % 8:
        raise ValueError(f"the crop side must be a positive multiple of 8, got {crop}")


def up_block(inplanes: int, width: int, outplanes: int) -> Bottleneck:
    """A Bottleneck that doubles the resolution: its 3x3 conv and its skip become 2x2 s2 transposed
    convs (the skip keeps torchvision's ``downsample`` name although it upsamples)."""
    skip = nn.Sequential(nn.ConvTranspose2d(inplanes, outplanes, 2, stride=2, bias=False),
                         nn.BatchNorm2d(outplanes))
    block = Bottleneck(inplanes, width, outplanes, downsample=skip)
    block.conv2 = nn.ConvTranspose2d(width, width, 2, stride=2, bias=False)
    return block


def up_stage(inplanes: int, width: int, outplanes: int, blocks: int) -> nn.Sequential:
    """One decoder stage: an upsampling block, then plain Bottlenecks at the new resolution."""
    rest = [Bottleneck(outplanes, width, outplanes) for _ in range(blocks - 1)]
    return nn.Sequential(up_block(inplanes, width, outplanes), *rest)


def conv_bn_relu(inplanes: int, outplanes: int) -> nn.Sequential:
    """3x3 stride-2 conv (padding 1, no bias) + BN + ReLU: halves the resolution."""
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(outplanes), nn.ReLU(inplace=True))


class OCBE(nn.Module):
    """One-class bottleneck embedding: fuses the three teacher scales into 2048@s/8."""

    def __init__(self) -> None:
        super().__init__()
        self.down_a = nn.Sequential(conv_bn_relu(256, 512), conv_bn_relu(512, 1024))
        self.down_b = conv_bn_relu(512, 1024)
        self.blocks = make_layer(3 * 1024, 1024, 2048, blocks=3, stride=2)

    def forward(self, fa: Tensor, fb: Tensor, fc: Tensor) -> Tensor:
        return self.blocks(torch.cat([self.down_a(fa), self.down_b(fb), fc], dim=1))


class Decoder(nn.Module):
    """Student: Wide-ResNet-50-2-shaped stages (3, 4, 6 blocks) run from deep to shallow."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = up_stage(2048, 512, 1024, 3)
        self.layer2 = up_stage(1024, 256, 512, 4)
        self.layer3 = up_stage(512, 128, 256, 6)

    def forward(self, z: Tensor) -> list[Tensor]:
        """Returns the maps shallow-first (256@s, 512@s/2, 1024@s/4) to pair with the teacher's."""
        d1024 = self.layer1(z)
        d512 = self.layer2(d1024)
        return [self.layer3(d512), d512, d1024]


class LightOCBE(nn.Module):
    """The depth-1 bottleneck: 256@s -> 512@s/2 (strided 3x3) -> 1024@s/4 (one strided Bottleneck)."""

    def __init__(self) -> None:
        super().__init__()
        self.down_a = conv_bn_relu(256, 512)
        self.blocks = make_layer(512, 256, 1024, blocks=1, stride=2)

    def forward(self, fa: Tensor) -> Tensor:
        return self.blocks(self.down_a(fa))


class LightDecoder(nn.Module):
    """The depth-1 student: two upsampling Bottlenecks, 1024@s/4 -> 512@s/2 -> 256@s."""

    def __init__(self) -> None:
        super().__init__()
        self.layer2 = up_stage(1024, 256, 512, 1)
        self.layer3 = up_stage(512, 128, 256, 1)

    def forward(self, z: Tensor) -> list[Tensor]:
        return [self.layer3(self.layer2(z))]


TEACHER_DEPTHS = (1, 3)


@dataclass
class FerdOutput:
    enc: list[Tensor]   # teacher fa, fb, fc
    dec: list[Tensor]   # student maps of the same shapes
    recon: Tensor       # B@c, compares with the input
    logit: Tensor       # conv3(|head(dec) - head(enc)|), N x 1 x c x c
    enhanced: Tensor    # head(enc): what the FEN adds to its input


def _init_like_reference(net: nn.Module) -> None:
    """Kaiming (fan-out) convs and unit BNs, as torchvision and the reference initialise them."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class FERD(nn.Module):
    """ConvH + frozen teacher + OCBE + student decoder + de-ConvH + pixel classifier."""

    def __init__(self, bands: int, head_width: int | None = None, depth: int = 3) -> None:
        super().__init__()
        if depth not in TEACHER_DEPTHS:
            raise ValueError(f"the teacher depth must be one of {TEACHER_DEPTHS}, not {depth}")
        self.bands, self.depth = bands, depth
        self.head_width = head_width or head_width_for(bands)
        self.convh = nn.Conv2d(bands, 64, 1, bias=False)
        teacher = wide_resnet101_2_layers(upto=depth)
        for name, stage in teacher.items():
            setattr(self, name, stage)
        self.ocbe = OCBE() if depth == 3 else LightOCBE()
        self.decoder = Decoder() if depth == 3 else LightDecoder()
        self.deconvh = nn.Conv2d(256, bands, 1, bias=False)
        self.conv1 = nn.Conv2d(256, self.head_width, 1)
        self.conv2 = nn.Conv2d(self.head_width, bands, 1)
        self.conv3 = nn.Conv2d(bands, 1, 1)
        for part in (teacher, self.ocbe, self.decoder):
            _init_like_reference(part)
        for conv in (self.convh, self.deconvh, self.conv1, self.conv2, self.conv3):
            nn.init.xavier_normal_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        for p in self.teacher_parameters():
            p.requires_grad_(False)

    # --- parameter groups -------------------------------------------------------------------
    def teacher_modules(self) -> list[nn.Module]:
        return [getattr(self, name) for name in TEACHER_LAYERS[: self.depth]]

    def teacher_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.teacher_modules() for p in m.parameters()]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """ConvH, OCBE, decoder, de-ConvH and classifier: what the reference's Adam updates."""
        parts = (self.convh, self.ocbe, self.decoder, self.deconvh, self.conv1, self.conv2, self.conv3)
        return [p for m in parts for p in m.parameters()]

    def train(self, mode: bool = True) -> FERD:
        """The teacher stays in eval mode (frozen BN statistics) whatever the mode asked."""
        super().train(mode)
        for m in self.teacher_modules():
            m.eval()
        return self

    # --- forward ----------------------------------------------------------------------------
    head = FEN.head  # the FEN's own head (conv1, ReLU, conv2, ReLU) on this network's conv1/conv2

    def forward(self, x: Tensor) -> FerdOutput:
        check_crop(x.shape[-1])
        # ConvH is pointwise: applying it before the reflect pad equals the reference's order.
        f = F.pad(self.convh(x), (PAD, PAD, PAD, PAD), mode="reflect")
        enc = [self.layer1(f)]
        for stage in self.teacher_modules()[1:]:
            enc.append(stage(enc[-1]))
        fa = enc[0]
        dec = self.decoder(self.ocbe(*enc))
        inner = (slice(None), slice(None), slice(PAD, -PAD), slice(PAD, -PAD))
        recon = self.deconvh(dec[0])[inner]
        enhanced = self.head(fa[inner])
        logit = self.conv3(torch.abs(self.head(dec[0][inner]) - enhanced))
        return FerdOutput(enc, dec, recon, logit, enhanced)

    # --- teacher weights and the FEN ------------------------------------------------------
    def load_teacher(self, state_dict: dict[str, Tensor], layers: tuple[str, ...] = TEACHER_LAYERS) -> int:
        """Load ``layers`` from a torchvision-keyed state dict; returns the number of tensors set."""
        own = self.state_dict()
        layers = tuple(n for n in layers if n in TEACHER_LAYERS[: self.depth])
        wanted = {k: v for k, v in state_dict.items() if k.split(".", 1)[0] in layers}
        expected = {k for k in own if k.split(".", 1)[0] in layers}
        missing = sorted(expected - wanted.keys())
        if missing:
            raise KeyError(f"the teacher weights lack {len(missing)} tensors, e.g. {missing[0]}")
        for k, v in wanted.items():
            if k in own and own[k].shape != v.shape:
                raise ValueError(f"{k}: shape {tuple(v.shape)} differs from the model's {tuple(own[k].shape)}")
        self.load_state_dict({k: v for k, v in wanted.items() if k in expected}, strict=False)
        return len(expected)

    def fen(self) -> FEN:
        """The pruned inference network with this network's ConvH, layer1 and head (a copy)."""
        fen = FEN(self.bands, self.head_width)
        own = self.state_dict()
        fen.load_state_dict({k: own[k].detach().clone() for k in fen.state_dict()})
        return fen.eval()


@dataclass
class LossTerms:
    total: Tensor
    bce: Tensor
    mse: Tensor
    cos: Tensor

    def items(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "bce", "mse", "cos")}


def cosine_distance(enc: list[Tensor], dec: list[Tensor]) -> Tensor:
    """``sum_l mean_n (1 - cos(enc_l[n], dec_l[n]))`` over each sample's whole flattened map."""
    total = enc[0].new_zeros(())
    for e, d in zip(enc, dec, strict=True):
        total = total + (1 - F.cosine_similarity(e.flatten(1), d.flatten(1), dim=1)).mean()
    return total


def ferd_loss(x: Tensor, out: FerdOutput, bce_on_logits: bool = False) -> LossTerms:
    """The reference loss. By default BCE-with-logits is fed the already-sigmoided ``p`` (what the
    published code does); ``bce_on_logits`` feeds it the logits, the textbook form."""
    score = out.logit if bce_on_logits else torch.sigmoid(out.logit)
    bce = F.binary_cross_entropy_with_logits(score, torch.zeros_like(score))
    mse = F.mse_loss(out.recon, x)
    cos = cosine_distance(out.enc, out.dec)
    total = LOSS_WEIGHTS["bce"] * bce + LOSS_WEIGHTS["mse"] * mse + LOSS_WEIGHTS["cos"] * cos
    return LossTerms(total, bce, mse, cos)
