"""GDWS forms that do not rely on nn.Conv2d's geometry: im2col + matmuls (``unfold``) and G == 0 (``zero``)."""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F

from gdws.core.shapes import conv_output_hw
from gdws.fast.forms import Form, padded_factors, sorted_channels
from gdws.fast.spec import GDWSSpec

_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


class _Geometry(Form):
    """Shared explicit-padding / output-size logic for the forms that do not use nn.Conv2d's geometry."""

    def __init__(self, spec: GDWSSpec) -> None:
        super().__init__(False)
        self.pads: List[int] = list(spec.pads())
        self.pad_mode: str = _PAD_MODES[spec.padding_mode]
        self.kernel: List[int] = list(spec.kernel_size)
        self.stride: List[int] = list(spec.stride)
        self.dilation: List[int] = list(spec.dilation)
        self.out_channels: int = spec.out_channels

    def _out_hw(self, h: int, w: int) -> List[int]:
        return conv_output_hw([h, w], self.kernel, self.stride, self.pads, self.dilation)


class Unfold(_Geometry):
    """im2col (F.unfold) + per-channel batched matmul (depthwise) + matmul (pointwise)."""

    def __init__(self, spec: GDWSSpec) -> None:
        super().__init__(spec)
        self.form_name = "unfold"
        perm = sorted_channels(spec)
        self.gather = not torch.equal(perm, torch.arange(spec.in_channels))
        self.register_buffer("perm", perm.to(spec.pointwise.device))
        dw, pw = padded_factors(spec, perm)
        self.register_buffer("dw", dw.contiguous())  # [n, m, kk]
        self.register_buffer("pw", pw.contiguous())  # [M, n*m]
        self.register_buffer("bias", None if spec.bias is None else spec.bias.reshape(-1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gather:
            x = x.index_select(1, self.perm)
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        hw = self._out_hw(h, w)
        if self.pads != [0, 0, 0, 0]:
            x = F.pad(x, self.pads, mode=self.pad_mode)
        cols = F.unfold(x, self.kernel, dilation=self.dilation, stride=self.stride)
        n, m, kk = self.dw.shape[0], self.dw.shape[1], self.dw.shape[2]
        y = torch.matmul(self.dw, cols.view(b, n, kk, -1)).reshape(b, n * m, -1)
        out = torch.matmul(self.pw, y)
        if self.bias is not None:
            out = out + self.bias
        return out.view(b, self.out_channels, hw[0], hw[1])


class Zero(_Geometry):
    """G == 0: every output pixel is the bias (or zero)."""

    def __init__(self, spec: GDWSSpec) -> None:
        super().__init__(spec)
        self.form_name = "zero"
        bias = spec.bias if spec.bias is not None else spec.pointwise.new_zeros(spec.out_channels)
        self.register_buffer("bias", bias.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hw = self._out_hw(x.shape[2], x.shape[3])
        out = torch.empty(x.shape[0], self.out_channels, hw[0], hw[1], dtype=x.dtype, device=x.device)
        return out.copy_(self.bias.expand_as(out))
