"""VGG-16 variants of the paper's tables: HYDRA's (table "hydra") and ADMM's (table "admm")."""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from gdws.models.normalize import Normalize, NormalizeSpec
from gdws.models.registry import register_model, scale_channels

# Architectures as data: an int is a conv3x3 (+BN+ReLU) with that many output channels, "M" a 2x2 max-pool.
VGG16_CFG: list[Union[int, str]] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# HYDRA's VGG-16 drops the last max-pool and pools adaptively to 2x2 instead.
VGG16_HYDRA_CFG: list[Union[int, str]] = VGG16_CFG[:-1]


def make_features(cfg: Sequence[Union[int, str]], width: float, conv_bias: bool) -> tuple[nn.Sequential, int]:
    """Conv/BN/ReLU stack described by ``cfg``; returns it and its number of output channels."""
    layers: list[nn.Module] = []
    in_ch = 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        out_ch = scale_channels(int(item), width)
        layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=conv_bias), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
        in_ch = out_ch
    return nn.Sequential(*layers), in_ch


class VGG(nn.Module):
    """VGG feature stack, a global pooling to ``pool_size`` and an MLP head.

    ``hidden`` lists the widths of the hidden fully connected layers (empty: a single linear layer).
    """

    def __init__(
        self,
        cfg: Sequence[Union[int, str]],
        num_classes: int,
        width: float,
        normalize: NormalizeSpec,
        conv_bias: bool,
        pool_size: int,
        hidden: Sequence[int],
    ) -> None:
        super().__init__()
        self.normalize = Normalize(normalize)
        self.features, out_ch = make_features(cfg, width, conv_bias)
        # On 32x32 inputs ADMM's VGG already ends at 1x1, so its pooling is a no-op kept for other sizes.
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        head: list[nn.Module] = []
        in_f = out_ch * pool_size * pool_size
        for h in hidden:
            h = scale_channels(h, width)
            head += [nn.Linear(in_f, h), nn.ReLU(inplace=True)]
            in_f = h
        head.append(nn.Linear(in_f, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of [0, 1] images."""
        x = self.avgpool(self.features(self.normalize(x)))
        return self.classifier(torch.flatten(x, 1))


@register_model
def vgg16_hydra(num_classes: int = 10, width: float = 1.0, normalize: NormalizeSpec = "cifar10") -> VGG:
    """HYDRA's VGG-16: bias-free convs + BN, 2x2 adaptive pool, FC 2048-256-256-classes (15,311,818 params)."""
    return VGG(VGG16_HYDRA_CFG, num_classes, width, normalize, conv_bias=False, pool_size=2, hidden=(256, 256))


@register_model
def vgg16(num_classes: int = 10, width: float = 1.0, normalize: NormalizeSpec = "cifar10") -> VGG:
    """ADMM's VGG-16: convs with bias + BN, 5 max-pools, FC 512-classes (14,728,266 params)."""
    return VGG(VGG16_CFG, num_classes, width, normalize, conv_bias=True, pool_size=1, hidden=())
