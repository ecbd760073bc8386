"""MobileNetV1 (Howard et al. 2017) and MobileNetV2 (Sandler et al. 2018) with CIFAR strides."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gdws.models.normalize import Normalize, NormalizeSpec
from gdws.models.registry import register_model, scale_channels

# MobileNetV1 blocks as data: output channels, or (output channels, stride).
MOBILENET_V1_CFG: list[int | tuple[int, int]] = [64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024]

# MobileNetV2 stage table: (expansion t, output channels c, repeats n, first stride s).
# CIFAR variant: the second stage keeps stride 1 (and the stem has stride 1) for 32x32 inputs.
MOBILENET_V2_CFG: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]


class DWSBlock(nn.Module):
    """Depthwise 3x3 - BN - ReLU - pointwise 1x1 - BN - ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=1, groups=in_ch, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv2 = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output."""
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class MobileNetV1(nn.Module):
    """conv3x3 3->32 (stride 1) + BN + ReLU, 13 depthwise-separable blocks, avgpool, FC."""

    def __init__(self, num_classes: int, width: float, normalize: NormalizeSpec) -> None:
        super().__init__()
        self.normalize = Normalize(normalize)
        in_ch = scale_channels(32, width)
        self.conv1 = nn.Conv2d(3, in_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch)
        blocks = []
        for item in MOBILENET_V1_CFG:
            out_ch, stride = item if isinstance(item, tuple) else (item, 1)
            out_ch = scale_channels(out_ch, width)
            blocks.append(DWSBlock(in_ch, out_ch, stride))
            in_ch = out_ch
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of [0, 1] images."""
        out = self.layers(F.relu(self.bn1(self.conv1(self.normalize(x)))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class InvertedResidual(nn.Module):
    """[expand 1x1 - BN - ReLU6] - DW 3x3 - BN - ReLU6 - project 1x1 - BN, residual if shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:  # no expand conv when t = 1 (standard layout)
            layers += [nn.Conv2d(in_ch, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output."""
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """Stem conv3x3 32 (stride 1), inverted residual stages, conv1x1 -> 1280, avgpool, FC."""

    def __init__(self, num_classes: int, width: float, normalize: NormalizeSpec) -> None:
        super().__init__()
        self.normalize = Normalize(normalize)
        in_ch = scale_channels(32, width)
        last_ch = scale_channels(1280, width)
        layers: list[nn.Module] = [nn.Conv2d(3, in_ch, 3, padding=1, bias=False), nn.BatchNorm2d(in_ch), nn.ReLU6(inplace=True)]
        for t, c, n, s in MOBILENET_V2_CFG:
            out_ch = scale_channels(c, width)
            for i in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
        layers += [nn.Conv2d(in_ch, last_ch, 1, bias=False), nn.BatchNorm2d(last_ch), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of [0, 1] images."""
        out = F.adaptive_avg_pool2d(self.features(self.normalize(x)), 1)
        return self.classifier(torch.flatten(out, 1))


@register_model
def mobilenet_v1(num_classes: int = 10, width: float = 1.0, normalize: NormalizeSpec = "cifar10") -> MobileNetV1:
    """MobileNetV1 for CIFAR (3,217,226 params)."""
    return MobileNetV1(num_classes, width, normalize)


@register_model
def mobilenet_v2(num_classes: int = 10, width: float = 1.0, normalize: NormalizeSpec = "cifar10") -> MobileNetV2:
    """MobileNetV2 for CIFAR, stem and second stage at stride 1 (2,236,682 params)."""
    return MobileNetV2(num_classes, width, normalize)
