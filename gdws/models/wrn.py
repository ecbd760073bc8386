"""Wide ResNet (Zagoruyko & Komodakis 2016), pre-activation, for 32x32 inputs: WRN-28-4."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gdws.models.normalize import Normalize, NormalizeSpec
from gdws.models.registry import register_model, scale_channels


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3; a 1x1 conv shortcut when the width changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.equal_in_out = in_ch == out_ch and stride == 1
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        act = F.relu(self.bn1(x))
        skip = x if self.convShortcut is None else self.convShortcut(act)
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return out + skip


class WideStage(nn.Module):
    """``n`` wide blocks; the first one changes width/stride."""

    def __init__(self, n: int, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[WideBlock(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1) for i in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stage output."""
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``: stem conv3x3 16, three stages 16k/32k/64k, final BN-ReLU, avgpool, FC."""

    def __init__(self, depth: int, widen: int, num_classes: int, width: float, normalize: NormalizeSpec) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4 (e.g. 28), got {depth}")
        n = (depth - 4) // 6
        chans = [scale_channels(c, width) for c in (16, 16 * widen, 32 * widen, 64 * widen)]
        self.normalize = Normalize(normalize)
        self.conv1 = nn.Conv2d(3, chans[0], 3, padding=1, bias=False)
        self.block1 = WideStage(n, chans[0], chans[1], 1)
        self.block2 = WideStage(n, chans[1], chans[2], 2)
        self.block3 = WideStage(n, chans[2], chans[3], 2)
        self.bn1 = nn.BatchNorm2d(chans[3])
        self.fc = nn.Linear(chans[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of [0, 1] images."""
        out = self.block3(self.block2(self.block1(self.conv1(self.normalize(x)))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn1(out)), 1)
        return self.fc(torch.flatten(out, 1))


@register_model
def wrn28_4(num_classes: int = 10, width: float = 1.0, normalize: NormalizeSpec = "cifar10") -> WideResNet:
    """WideResNet-28-4, widths 16/64/128/256, 4 blocks per stage (5,849,050 params)."""
    return WideResNet(28, 4, num_classes, width, normalize)
