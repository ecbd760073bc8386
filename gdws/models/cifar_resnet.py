"""He et al.'s CIFAR ResNets 20/32/44/56/110 (3 stages of n basic blocks, option-A shortcuts), configurable width.

Module names follow the widely published CIFAR ResNet checkpoints (conv1, bn1, layer1.0.conv1, ..., linear),
and the option-A shortcut has no parameters, so those checkpoints load strictly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gdws.models.normalize import Normalize, NormalizeSpec
from gdws.models.registry import register_model, scale_channels


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample spatially by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shortcut output with ``out_ch`` channels."""
        x = x[:, :, :: self.stride, :: self.stride]
        # Split the padding evenly before/after, as the original CIFAR ResNets do.
        before = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus identity / option-A shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = PadShortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv3x3, three stages of ``n`` blocks at widths b/2b/4b (strides 1/2/2), avgpool, FC: depth 6n + 2."""

    def __init__(self, n: int, base_width: int, num_classes: int, width: float, normalize: NormalizeSpec) -> None:
        super().__init__()
        if not isinstance(base_width, int) or base_width < 1:
            raise ValueError(f"base_width must be a positive int (16 standard, 40 for 6.40 MB), got {base_width!r}")
        chans = [scale_channels(base_width * m, width) for m in (1, 2, 4)]
        self.normalize = Normalize(normalize)
        self.conv1 = nn.Conv2d(3, chans[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(chans[0])
        in_ch = chans[0]
        stages = []
        for i, ch in enumerate(chans):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_ch, ch, 2 if (i > 0 and j == 0) else 1))
                in_ch = ch
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of [0, 1] images."""
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


# The family as data: blocks per stage n gives depth 6n + 2. Parameter counts at base width 16: 269,722 (20),
# 464,154 (32), 658,586 (44), 853,018 (56), 1,727,962 (110); resnet20 at base width 40: 1,676,530 (6.40 MB).
DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}


def _register_depth(name: str, blocks: int) -> None:
    """Register the builder ``name``: a CIFAR ResNet with ``blocks`` basic blocks per stage."""
    def build(num_classes: int = 10, width: float = 1.0, normalize: NormalizeSpec = "cifar10",
              base_width: int = 16) -> CifarResNet:
        return CifarResNet(blocks, base_width, num_classes, width, normalize)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{name}: {blocks} option-A basic blocks per stage at base width ``base_width`` (16, 32, 64)."
    register_model(build)


for _name, _blocks in DEPTHS.items():
    _register_depth(_name, _blocks)
