"""Exact-equivalent implementations ("forms") of one GDWS layer.

All forms compute pointwise(depthwise_g(x)) + bias for the same factors; they differ only in how the
work is laid out for the hardware:

- ``straightforward``: gather the input channels (index [0]*g_0 + [1]*g_1 ...), depthwise conv with
  groups = G, 1x1 conv. The reference.
- ``stacked``: one multiplier-1 depthwise conv per kernel index j (channels sorted by g, so the channels
  with g_c > j are a prefix), concatenated; the pointwise columns are permuted to match. Multiplier-1
  depthwise convs have fast CPU kernels; multiplier > 1 ones often do not.
- ``grouped``: channels with equal g_c = v form one grouped conv (groups = n_v, out = n_v * v); the
  pointwise columns are permuted, so no G-sized gather is needed.
- ``padded``: one depthwise conv C -> C*max(g) with zero kernels (no gather at all); zero pointwise columns.
- ``dense``: the equivalent standard conv with weight What (never slower than the original conv).
- ``unfold`` and ``zero`` (gdws.fast.forms_explicit): im2col + batched matmuls; the constant G == 0 form.
Forms whose name ends in ``_cl`` run in channels_last memory format (input converted, output converted
back to NCHW). ``compiled`` is torch.compile of
the straightforward form (opt-in: it is not scriptable/exportable and compiles for tens of seconds). gdws.fast.candidates.build_forms
builds them all for one layer.
"""
from __future__ import annotations

import copy
from typing import List

import torch
from torch import nn

from gdws.fast.spec import GDWSSpec

def _conv(spec: GDWSSpec, cin: int, cout: int, groups: int, weight: torch.Tensor,
          bias: torch.Tensor | None = None, spatial: bool = True) -> nn.Conv2d:
    """An nn.Conv2d with the spec's geometry (or a 1x1 conv when ``spatial`` is False) and given weights."""
    if spatial:
        conv = nn.Conv2d(cin, cout, spec.kernel_size, spec.stride, spec.padding, spec.dilation,
                         groups=groups, bias=bias is not None, padding_mode=spec.padding_mode)
    else:
        conv = nn.Conv2d(cin, cout, 1, bias=bias is not None)
    conv = conv.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(conv.weight.shape))
        if bias is not None:
            conv.bias.copy_(bias)
    return conv.eval()


class Form(nn.Module):
    """Base class: records the form's name and optionally moves to channels_last."""

    form_name = "form"

    def __init__(self, channels_last: bool) -> None:
        super().__init__()
        self.channels_last = channels_last

    def _finish(self) -> "Form":
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        return self.eval()

    def _fmt(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _unfmt(self, y: torch.Tensor) -> torch.Tensor:
        # back to NCHW so that each layer's measured time includes its layout conversions and the
        # surrounding (NCHW) layers run as they were timed: per-layer times then add up
        if self.channels_last:
            return y.contiguous()
        return y


class PlainChannelsLast(Form):
    """A plain (dense) conv of the network run in channels_last layout: the layout choice GDWS layers get
    (``dense_cl``), offered to the network's other convs too, so that a dense baseline is not slower than
    the GDWS network for a reason that has nothing to do with GDWS."""

    form_name = "dense_cl"

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(channels_last=True)
        self.conv = copy.deepcopy(conv)
        self._finish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._unfmt(self.conv(self._fmt(x)))


class Straightforward(Form):
    """Gather + depthwise(groups=G) + pointwise: the authors' form."""

    def __init__(self, spec: GDWSSpec, channels_last: bool = False) -> None:
        super().__init__(channels_last)
        self.form_name = "straightforward_cl" if channels_last else "straightforward"
        G, dev = spec.G, spec.pointwise.device
        self.register_buffer("index", spec.index().to(dev))
        self.depthwise = _conv(spec, G, G, G, spec.depthwise)
        self.pointwise = _conv(spec, G, spec.out_channels, 1, spec.pointwise, spec.bias, spatial=False)
        self._finish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._unfmt(self.pointwise(self.depthwise(self._fmt(x).index_select(1, self.index))))


def sorted_channels(spec: GDWSSpec) -> torch.Tensor:
    """Channels with g_c > 0 in decreasing order of g_c (stable), so 'g_c > j' is a prefix for every j."""
    g = spec.g.cpu()
    order = torch.sort(-g, stable=True).indices
    return order[: int((g > 0).sum())]


class _SortedStages(Form):
    """Frame of the forms that read the input channels sorted by g_c (``sorted_channels``): an optional gather
    into that order, depthwise convs that each read a contiguous slice of the sorted channels (starting at
    ``starts[i]``), and one pointwise conv over their concatenated outputs, its columns permuted to match."""

    def __init__(self, spec: GDWSSpec, channels_last: bool) -> None:
        super().__init__(channels_last)
        order = sorted_channels(spec)
        self.gather = not torch.equal(order, torch.arange(spec.in_channels))
        self.register_buffer("perm", order.to(spec.pointwise.device))

    def _build(self, spec: GDWSSpec, stages: List[tuple[int, int, int, torch.Tensor]]) -> None:
        """``stages``: (first sorted channel, channels, multiplier, depthwise rows of ``spec``) per conv."""
        self.starts: List[int] = [s[0] for s in stages]
        self.convs = nn.ModuleList(
            _conv(spec, n, n * v, n, spec.depthwise[rows.to(spec.depthwise.device)]) for _, n, v, rows in stages)
        cols = torch.cat([rows for *_, rows in stages]).to(spec.pointwise.device)
        self.pointwise = _conv(spec, spec.G, spec.out_channels, 1, spec.pointwise[:, cols], spec.bias, spatial=False)
        self._finish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._fmt(x)
        if self.gather:
            x = x.index_select(1, self.perm)
        ys: List[torch.Tensor] = []
        for i, conv in enumerate(self.convs):
            ys.append(conv(x.narrow(1, self.starts[i], conv.in_channels)))
        return self._unfmt(self.pointwise(torch.cat(ys, 1) if len(ys) > 1 else ys[0]))


class Stacked(_SortedStages):
    """One multiplier-1 depthwise conv per kernel index j over the channels with g_c > j, then pointwise."""

    def __init__(self, spec: GDWSSpec, channels_last: bool = False) -> None:
        super().__init__(spec, channels_last)
        self.form_name = "stacked_cl" if channels_last else "stacked"
        g, off, order = spec.g.cpu(), spec.offsets(), self.perm.cpu()
        stages = []
        for j in range(int(g.max())):
            chans = order[g[order] > j]  # a prefix of the sorted channels
            stages.append((0, len(chans), 1, off[chans] + j))
        self._build(spec, stages)


class Grouped(_SortedStages):
    """Channels with equal g_c = v as one grouped conv (groups = n_v, multiplier v), then pointwise."""

    def __init__(self, spec: GDWSSpec, channels_last: bool = False) -> None:
        super().__init__(spec, channels_last)
        self.form_name = "grouped_cl" if channels_last else "grouped"
        off, order = spec.offsets(), self.perm.cpu()
        gp = spec.g.cpu()[order]
        stages, start = [], 0
        for v in torch.unique(gp).flip(0).tolist():
            chans = order[gp == v]  # a contiguous block of the sorted channels
            rows = (off[chans][:, None] + torch.arange(v)[None, :]).reshape(-1)  # channel-major, as groups expect
            stages.append((start, len(chans), v, rows))
            start += len(chans)
        self._build(spec, stages)


def padded_factors(spec: GDWSSpec, chans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise [n, m, kh*kw] and pointwise [M, n*m] for channels ``chans``, zero-padded to m = max g."""
    g, off = spec.g.cpu(), spec.offsets()
    m, kk = int(g.max()), spec.kernel_size[0] * spec.kernel_size[1]
    n = len(chans)
    dw = spec.depthwise.new_zeros(n, m, kk)
    pw = spec.pointwise.new_zeros(spec.out_channels, n, m)
    for i, c in enumerate(chans.tolist()):
        k, o = int(g[c]), int(off[c])
        dw[i, :k] = spec.depthwise[o:o + k].reshape(k, kk)
        pw[:, i, :k] = spec.pointwise[:, o:o + k]
    return dw, pw.reshape(spec.out_channels, n * m)


class Padded(Form):
    """Depthwise C -> C*max(g) with zero kernels (groups = C, no gather), pointwise with zero columns."""

    def __init__(self, spec: GDWSSpec, channels_last: bool = False) -> None:
        super().__init__(channels_last)
        self.form_name = "padded_cl" if channels_last else "padded"
        c = spec.in_channels
        dw, pw = padded_factors(spec, torch.arange(c))
        self.depthwise = _conv(spec, c, dw.shape[0] * dw.shape[1], c, dw)
        self.pointwise = _conv(spec, pw.shape[1], spec.out_channels, 1, pw, spec.bias, spatial=False)
        self._finish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._unfmt(self.pointwise(self.depthwise(self._fmt(x))))


class Dense(Form):
    """The equivalent standard conv with weight What."""

    def __init__(self, spec: GDWSSpec, channels_last: bool = False) -> None:
        super().__init__(channels_last)
        self.form_name = "dense_cl" if channels_last else "dense"
        self.conv = _conv(spec, spec.in_channels, spec.out_channels, 1, spec.weight_hat(), spec.bias)
        self._finish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._unfmt(self.conv(self._fmt(x)))
