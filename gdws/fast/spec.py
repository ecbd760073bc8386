"""A device-free description of one GDWS layer, the common input of every fast form.

Every exact-equivalent form in :mod:`gdws.fast.forms` is built from a :class:`GDWSSpec`, not from
the core module itself, so that a following BatchNorm can be folded into the spec first and the
dense equivalent weight can be recomputed from the (folded) factors.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from gdws.core.allocation import compose_weight, index_from_g
from gdws.core.shapes import conv_pads


@dataclass(frozen=True)
class GDWSSpec:
    """Factors and geometry of a GDWS layer (C, K, g, M).

    g: LongTensor [C]; depthwise: [G, kh, kw] (channel 0's g_0 kernels first);
    pointwise: [M, G]; bias: [M] or None; the rest is the original conv's geometry.
    """

    g: torch.Tensor
    depthwise: torch.Tensor
    pointwise: torch.Tensor
    bias: torch.Tensor | None
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]
    padding_mode: str

    @property
    def in_channels(self) -> int:
        """C, the number of input channels."""
        return int(self.g.numel())

    @property
    def out_channels(self) -> int:
        """M, the number of output channels."""
        return int(self.pointwise.shape[0])

    @property
    def G(self) -> int:  # noqa: N802 - the paper's name
        """Total number of intermediate (depthwise) channels."""
        return int(self.g.sum())

    def index(self) -> torch.Tensor:
        """Input channel read by each intermediate channel: [0]*g_0 + [1]*g_1 + ... (on the CPU)."""
        return index_from_g(self.g.cpu())

    def offsets(self) -> torch.Tensor:
        """Row of channel c's first kernel in ``depthwise`` (exclusive cumulative sum of g)."""
        return torch.cumsum(self.g.cpu(), 0) - self.g.cpu()

    def weight_hat(self) -> torch.Tensor:
        """The equivalent dense weight What [M, C, kh, kw]."""
        index = self.index().to(self.pointwise.device)
        return compose_weight(self.depthwise, self.pointwise, index, self.in_channels)

    def pads(self) -> tuple[int, int, int, int]:
        """Explicit (left, right, top, bottom) padding, resolving 'same'/'valid' as nn.Conv2d does."""
        return conv_pads(self.kernel_size, self.dilation, self.padding)

    def fold_batchnorm(self, bn: nn.BatchNorm2d) -> "GDWSSpec":
        """Return the spec of this layer followed by ``bn`` in eval mode (folded into the pointwise stage)."""
        scale, shift = bn_affine(bn)
        bias = shift if self.bias is None else self.bias.double() * scale + shift
        pw = self.pointwise.double() * scale[:, None]
        dtype = self.pointwise.dtype
        return replace(self, pointwise=pw.to(dtype), bias=bias.to(dtype))

    @classmethod
    def from_layer(cls, layer: nn.Module) -> "GDWSSpec":
        """Read a :class:`gdws.core.GDWSConv2d` (attributes g, depthwise, pointwise, to_conv())."""
        conv = layer.to_conv()  # geometry and bias are read from the equivalent conv, valid even when G == 0
        g = layer.g.detach().long().cpu()
        G = int(g.sum())
        kh, kw = conv.kernel_size
        ref = conv.weight.detach()
        if G > 0:
            dw = layer.depthwise.weight.detach().reshape(G, kh, kw)
            pw = layer.pointwise.weight.detach().reshape(conv.out_channels, G)
        else:
            dw = ref.new_zeros(0, kh, kw)
            pw = ref.new_zeros(conv.out_channels, 0)
        bias = None if conv.bias is None else conv.bias.detach().clone()
        padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
        return cls(g=g, depthwise=dw.clone(), pointwise=pw.clone(), bias=bias,
                   kernel_size=tuple(conv.kernel_size), stride=tuple(conv.stride), padding=padding,
                   dilation=tuple(conv.dilation), padding_mode=conv.padding_mode)


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) in float64 such that eval-mode bn(y) = y * scale + shift per channel."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    shift = -bn.running_mean.double() * scale
    if bn.affine:
        scale, shift = scale * bn.weight.double(), shift * bn.weight.double() + bn.bias.double()
    return scale, shift
