"""ResNet-18 with depthwise-separable convolutions (the paper's "ResNet-18 DWS" lightweight baseline)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gdws.models.normalize import Normalize, NormalizeSpec
from gdws.models.registry import register_model, scale_channels

# Stage table: (output channels, number of basic blocks, first stride).
RESNET18_STAGES: list[tuple[int, int, int]] = [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)]


class DWSConv(nn.Sequential):
    """Replacement for a 3x3 conv: depthwise 3x3 + BN, then pointwise 1x1 (its BN follows outside)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=1, groups=in_ch, bias=False),
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
        )


class DWSBasicBlock(nn.Module):
    """ResNet basic block with both 3x3 convs made depthwise-separable; 1x1 conv + BN shortcut on shape change."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = DWSConv(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = DWSConv(out_ch, out_ch, 1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetDWS(nn.Module):
    """Dense stem conv3x3 64 + BN + ReLU, DWS basic-block stages, avgpool, FC."""

    def __init__(self, num_classes: int, width: float, normalize: NormalizeSpec) -> None:
        super().__init__()
        self.normalize = Normalize(normalize)
        in_ch = scale_channels(RESNET18_STAGES[0][0], width)
        self.conv1 = nn.Conv2d(3, in_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch)
        stages = []
        for ch, n, stride in RESNET18_STAGES:
            ch = scale_channels(ch, width)
            blocks = []
            for i in range(n):
                blocks.append(DWSBasicBlock(in_ch, ch, stride if i == 0 else 1))
                in_ch = ch
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of [0, 1] images."""
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


@register_model
def resnet18_dws(num_classes: int = 10, width: float = 1.0, normalize: NormalizeSpec = "cifar10") -> ResNetDWS:
    """ResNet-18 with every 3x3 conv but the stem depthwise-separable (about 1.44M params, 5.5 MB)."""
    return ResNetDWS(num_classes, width, normalize)
