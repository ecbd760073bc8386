"""GDWSConv2d: a generalized depthwise-separable convolution (spec section 2)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from .allocation import GDWSPlan, compose_weight, index_from_g, lego, mego
from .shapes import conv_output_hw, conv_pads


class GDWSConv2d(nn.Module):
    """GDWS layer (C, K, g, M): depthwise stage with g_c kernels per input channel, then a 1x1 pointwise stage.

    `GDWSConv2d(C, M, kernel_size, g, ...)` builds a layer of the right shapes with uninitialised weights (used to
    load a saved converted model, see `load_converted`); `from_conv` / `from_plan` build the approximation of a conv.
    The depthwise stage carries stride, padding, dilation and padding_mode; the pointwise stage carries the bias.
    With G == 0 there are no stages (`depthwise` and `pointwise` are None) and the output is the bias (or zeros).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], g: Tensor,
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, bias: bool = True, padding_mode: str = "zeros",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        g = torch.as_tensor(g, dtype=torch.long).detach().cpu()
        if g.shape != (in_channels,) or (g < 0).any():
            raise ValueError(f"g must be a LongTensor [{in_channels}] of counts >= 0, got shape {tuple(g.shape)}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.padding_mode = padding_mode
        factory = dict(device=device, dtype=dtype)
        self.register_buffer("g", g.to(device))
        self.register_buffer("index", index_from_g(g).to(device))
        # persistent so that `error` survives save / load_converted
        self.register_buffer("sq_error", torch.zeros((), dtype=torch.float64, device=device))
        total = int(g.sum())
        if total > 0:
            self.depthwise = nn.Conv2d(total, total, self.kernel_size, self.stride, self.padding, self.dilation,
                                       groups=total, bias=False, padding_mode=padding_mode, **factory)
            self.pointwise = nn.Conv2d(total, out_channels, 1, bias=bias, **factory)
            self.register_parameter("bias", None)
        else:
            self.depthwise, self.pointwise = None, None
            self.bias = nn.Parameter(torch.zeros(out_channels, **factory)) if bias else None

    @classmethod
    def from_plan(cls, plan: GDWSPlan, conv: nn.Conv2d) -> "GDWSConv2d":
        """The GDWS layer realising `plan` for `conv` (hyper-parameters and bias taken from `conv`)."""
        check_conv(conv)
        w = conv.weight
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, plan.g, conv.stride, conv.padding,
                    conv.dilation, conv.bias is not None, conv.padding_mode, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            if layer.depthwise is not None:
                layer.depthwise.weight.copy_(plan.depthwise[:, None])
                layer.pointwise.weight.copy_(plan.pointwise[:, :, None, None])
                if conv.bias is not None:
                    layer.pointwise.bias.copy_(conv.bias)
            elif conv.bias is not None:
                layer.bias.copy_(conv.bias)
            layer.sq_error.fill_(plan.error)
        return layer

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, beta: float | None = None, max_channels: int | None = None,
                  alpha: Tensor | None = None) -> "GDWSConv2d":
        """LEGO (beta=...) or MEGO (max_channels=...) approximation of `conv`; exactly one of the two.

        alpha: per-input-channel error weights [C] (default all ones). Raises ValueError for groups > 1.
        """
        check_conv(conv)
        if (beta is None) == (max_channels is None):
            raise ValueError("pass exactly one of beta= (error budget, LEGO) or max_channels= (G budget, MEGO)")
        w = conv.weight.detach()
        plan = lego(w, beta, alpha) if beta is not None else mego(w, max_channels, alpha)
        return cls.from_plan(plan, conv)

    @property
    def error(self) -> float:
        """Weighted squared Frobenius error of the approximation it was built with."""
        return float(self.sq_error)

    @property
    def num_intermediate(self) -> int:
        """G, the number of intermediate (depthwise output) channels."""
        return int(self.index.numel())

    def weight_hat(self) -> Tensor:
        """The equivalent dense weight What [M, C, kh, kw] of the current (possibly trained) weights."""
        if self.depthwise is None:
            # no weights left: What is zero (dtype of the bias if any, else the default dtype)
            dtype = self.bias.dtype if self.bias is not None else torch.get_default_dtype()
            return torch.zeros(self.out_channels, self.in_channels, *self.kernel_size, dtype=dtype,
                               device=self.sq_error.device)
        return compose_weight(self.depthwise.weight[:, 0], self.pointwise.weight[:, :, 0, 0], self.index,
                              self.in_channels)

    def to_conv(self) -> nn.Conv2d:
        """An nn.Conv2d computing the same function (weight What, same bias and hyper-parameters)."""
        w = self.weight_hat().detach()
        bias = self.pointwise.bias if self.pointwise is not None else self.bias
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         self.dilation, bias=bias is not None, padding_mode=self.padding_mode,
                         device=w.device, dtype=w.dtype)
        with torch.no_grad():
            conv.weight.copy_(w)
            if bias is not None:
                conv.bias.copy_(bias)
        return conv

    def output_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Spatial output size (H', W') for an input of spatial size hw."""
        pads = conv_pads(self.kernel_size, self.dilation, self.padding)
        return tuple(conv_output_hw(list(hw), list(self.kernel_size), list(self.stride), list(pads),
                                    list(self.dilation)))

    def macs(self, output_hw: tuple[int, int]) -> int:
        """Multiply-accumulates per sample: (kh*kw + M) * G * H' * W'."""
        kh, kw = self.kernel_size
        return (kh * kw + self.out_channels) * self.num_intermediate * output_hw[0] * output_hw[1]

    def forward(self, x: Tensor) -> Tensor:
        if self.depthwise is None:
            h, w = self.output_size(x.shape[-2:])
            out = x.new_zeros(x.shape[0], self.out_channels, h, w)
            return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)
        return self.pointwise(self.depthwise(x.index_select(1, self.index)))

    def extra_repr(self) -> str:
        kh, kw = self.kernel_size
        return (f"C={self.in_channels}, K={kh}x{kw}, M={self.out_channels}, G={self.num_intermediate}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"padding_mode={self.padding_mode}")


def check_conv(conv: nn.Module) -> None:
    """Raise ValueError unless `conv` is an nn.Conv2d with groups == 1 (what GDWS can approximate)."""
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"expected an nn.Conv2d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(f"GDWS needs a conv with groups=1 (got groups={conv.groups}); grouped/depthwise convs are "
                         "not converted: exclude them (convert() skips them with reason 'grouped/depthwise')")
