"""The torchvision-style ResNet Bottleneck, written once for every FERD network.

Parameter names match torchvision's (``conv1``, ``bn1``, ..., ``downsample.0/1``) so the published
FERD ``enc.pt`` (Wide-ResNet-101-2 ``layer1``) and torchvision ImageNet state dicts load unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride, ResNet v1.5) -> 1x1 expand, plus skip, then ReLU."""

    def __init__(self, inplanes: int, width: int, outplanes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, outplanes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_layer(inplanes: int, width: int, outplanes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """A ResNet stage: block 0 gets a 1x1 (strided) conv + BN skip when the shape changes."""
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False),
            nn.BatchNorm2d(outplanes),
        )
    layers = [Bottleneck(inplanes, width, outplanes, stride, downsample)]
    layers += [Bottleneck(outplanes, width, outplanes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def wide_resnet101_2_layers(upto: int = 3) -> nn.ModuleDict:
    """Stages 1..``upto`` of Wide-ResNet-101-2 (inner width twice ResNet's), named ``layer1``..."""
    spec = {  # name: (inplanes, width, outplanes, blocks, stride)
        "layer1": (64, 128, 256, 3, 1),
        "layer2": (256, 256, 512, 4, 2),
        "layer3": (512, 512, 1024, 23, 2),
    }
    return nn.ModuleDict({name: make_layer(*args) for name, args in list(spec.items())[:upto]})
