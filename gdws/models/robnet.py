"""RobNet-free (Guo et al., CVPR 2020, "When NAS Meets Robustness") built from its per-cell architecture codes.

Architecture facts (from the RobNet paper and its public code, re-implemented here): a DARTS-style network
of 20 cells, C = 36, stem conv3x3 -> 3C + BN (affine), reduction cells at layers // 3 and 2 * layers // 3.
A cell preprocesses its two inputs with ReLU-conv1x1-BN (or FactorizedReduce when the previous cell
reduced), has 4 intermediate nodes each summing one op per earlier state, and concatenates the 4 nodes.
Every BN inside the cells is affine=False. Attribute names follow the original code so its
checkpoints load with :func:`gdws.models.load_checkpoint`.
"""
from __future__ import annotations

import json
from importlib import resources
from typing import Sequence

import torch
from torch import nn

from gdws.models.normalize import Normalize, NormalizeSpec
from gdws.models.registry import register_model, scale_channels

OP_CODES = ("00", "01", "10", "11")


def load_robnet_codes() -> list[list[str]]:
    """The 20 x 14 RobNet-free op codes shipped in ``robnet_codes.json``."""
    text = resources.files("gdws.models").joinpath("robnet_codes.json").read_text()
    return json.loads(text)["cells"]


class Preprocess(nn.Module):
    """ReLU-conv1x1-BN(affine=False) adapter to the cell's channel count."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, 1, bias=False),
                                nn.BatchNorm2d(c_out, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed state."""
        return self.op(x)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two stride-2 1x1 convs on offset grids, concatenated, then BN."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output at half resolution."""
        x = self.relu(x)
        # The second conv sees the grid shifted by one pixel, so together they cover every input pixel.
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class SepConv(nn.Module):
    """Two rounds of ReLU - depthwise 3x3 - pointwise 1x1 - BN(affine=False); stride on the first depthwise."""

    def __init__(self, c: int, stride: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, 3, stride=stride, padding=1, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c, affine=False),
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Separable-conv output."""
        return self.op(x)


class ResSepConv(nn.Module):
    """SepConv plus a residual (identity, or FactorizedReduce at stride 2)."""

    def __init__(self, c: int, stride: int) -> None:
        super().__init__()
        self.conv = SepConv(c, stride)
        self.res: nn.Module = nn.Identity() if stride == 1 else FactorizedReduce(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Separable conv plus residual."""
        return self.conv(x) + self.res(x)


class Zero(nn.Module):
    """The '00' edge: contributes zeros of the (strided) output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zeros shaped like the edge's output."""
        return torch.zeros_like(x[:, :, :: self.stride, :: self.stride])


def make_op(code: str, c: int, stride: int) -> nn.Module:
    """Module for one 2-bit edge code: 00 zero, 01 SepConv, 10 identity/FactorizedReduce, 11 SepConv + residual."""
    if code == "00":
        return Zero(stride)
    if code == "01":
        return SepConv(c, stride)
    if code == "10":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    if code == "11":
        return ResSepConv(c, stride)
    raise ValueError(f"unknown RobNet op code {code!r}; expected one of {OP_CODES}")


class ChosenOp(nn.Module):
    """Holds one edge's op under ``.op`` (the original code's module layout, for checkpoint keys)."""

    def __init__(self, code: str, c: int, stride: int) -> None:
        super().__init__()
        self.op = make_op(code, c, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Edge output."""
        return self.op(x)


class Cell(nn.Module):
    """RobNet cell: 2 preprocessed inputs, ``steps`` nodes summing one op per earlier state, concat of the last ``multiplier``."""

    def __init__(self, codes: Sequence[str], steps: int, multiplier: int, c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        n_edges = steps * (steps + 3) // 2
        if len(codes) != n_edges:
            raise ValueError(f"a {steps}-step cell needs {n_edges} op codes, got {len(codes)}")
        self.steps, self.multiplier = steps, multiplier
        self.preprocess0: nn.Module = FactorizedReduce(c_pp, c) if reduction_prev else Preprocess(c_pp, c)
        self.preprocess1 = Preprocess(c_p, c)
        ops = []
        for node in range(steps):
            for j in range(2 + node):  # node i reads s0, s1 and nodes 0..i-1
                stride = 2 if (reduction and j < 2) else 1
                ops.append(ChosenOp(codes[len(ops)], c, stride))
        self._ops = nn.ModuleList(ops)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        """Cell output: the last ``multiplier`` node states concatenated on channels."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        k = 0
        for _ in range(self.steps):
            node = sum(self._ops[k + j](h) for j, h in enumerate(states))
            k += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier:], dim=1)


class RobNet(nn.Module):
    """Stem conv3x3 + BN, ``len(codes)`` cells (reductions at 1/3 and 2/3), global avgpool, FC."""

    def __init__(self, codes: Sequence[Sequence[str]], num_classes: int, width: float, normalize: NormalizeSpec,
                 c: int = 36, steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3) -> None:
        super().__init__()
        layers = len(codes)
        # Even channel counts keep FactorizedReduce's two halves equal at any width.
        c = 2 * scale_channels(c // 2, width)
        self.normalize = Normalize(normalize)
        c_stem = stem_multiplier * c
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_pp, c_p, c_cur = c_stem, c_stem, c
        reduction_prev = False
        cells = []
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_cur *= 2
            cells.append(Cell(codes[i], steps, multiplier, c_pp, c_p, c_cur, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_cur
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of [0, 1] images."""
        s0 = s1 = self.stem(self.normalize(x))
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(self.global_pooling(s1), 1))


@register_model
def robnet_free(num_classes: int = 10, width: float = 1.0, normalize: NormalizeSpec = "cifar10") -> RobNet:
    """RobNet-free for CIFAR-10: C = 36, 20 cells, codes from ``robnet_codes.json`` (5,439,790 params)."""
    return RobNet(load_robnet_codes(), num_classes, width, normalize)
