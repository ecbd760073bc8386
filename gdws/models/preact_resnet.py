"""Pre-activation ResNets (He et al. 2016) for 32x32 inputs: PreAct ResNet-18 and -50."""
from __future__ import annotations

from typing import Sequence, Type, Union

import torch
import torch.nn.functional as F
from torch import nn

from gdws.models.normalize import Normalize, NormalizeSpec
from gdws.models.registry import register_model, scale_channels


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """1x1 conv (no BN) when the block changes shape, else ``None`` (identity)."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False))


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an identity or 1x1-conv shortcut."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.shortcut = _shortcut(in_ch, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        out = F.relu(self.bn1(x))
        # The projection shortcut reads the pre-activated input, as in the pre-activation paper.
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: 1x1 reduce, 3x3 (strided), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + skip


Block = Type[Union[PreActBlock, PreActBottleneck]]


class PreActResNet(nn.Module):
    """Stem conv3x3 (stride 1), four stages (``planes`` x ``num_blocks``), final BN-ReLU, avgpool, FC."""

    def __init__(
        self,
        block: Block,
        num_blocks: Sequence[int],
        planes: Sequence[int],
        num_classes: int,
        width: float,
        normalize: NormalizeSpec,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(normalize)
        in_ch = scale_channels(planes[0], width)
        self.conv1 = nn.Conv2d(3, in_ch, 3, padding=1, bias=False)
        stages = []
        for i, (p, n) in enumerate(zip(planes, num_blocks)):
            p = scale_channels(p, width)
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_ch, p, stride))
                in_ch = p * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(in_ch)
        self.linear = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of [0, 1] images."""
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1)
        return self.linear(torch.flatten(out, 1))


STAGE_PLANES = (64, 128, 256, 512)


@register_model
def preact_resnet18(num_classes: int = 10, width: float = 1.0, normalize: NormalizeSpec = "cifar10") -> PreActResNet:
    """PreAct ResNet-18: basic blocks [2, 2, 2, 2] (11,172,170 params)."""
    return PreActResNet(PreActBlock, (2, 2, 2, 2), STAGE_PLANES, num_classes, width, normalize)


@register_model
def preact_resnet50(num_classes: int = 10, width: float = 1.0, normalize: NormalizeSpec = "cifar10") -> PreActResNet:
    """PreAct ResNet-50: bottleneck blocks [3, 4, 6, 3], expansion 4 (23,513,162 params)."""
    return PreActResNet(PreActBottleneck, (3, 4, 6, 3), STAGE_PLANES, num_classes, width, normalize)
