"""Closed-form refit of GDWS pointwise stages on calibration data (data-aware GDWS, beyond the paper).

With its depthwise kernels fixed, a GDWS layer's output is linear in its pointwise weights and bias:
y_hat = P z + b, z the depthwise output at one position. Layer after layer, in forward order, the refit solves

    min_{P, b}  E || y - (P z + b) ||^2

where z is computed on the CONVERTED network's input to the layer (so each refit also absorbs the error of the
layers before it) and y is the ORIGINAL conv's output on the ORIGINAL network's input. Z^T Z and Z^T Y (with a
column of ones for the bias) are accumulated in float64 over batches (each batch's products in the activations'
dtype on centred rows, see Moments), so memory is one batch's activations of one layer plus (G+1)^2 + (G+1) M
numbers; the normal equations are solved in float64 with a ridge scaled to the trace.
Cost: the sequential path (gdws.core.sequential) feeds each layer the cached activations of both networks,
so the refit of a whole network costs about one forward pass of each; the layer-by-layer path here (the
fallback for forwards that cannot be cut into pieces) runs the calibration set through both networks up to
each layer (the passes stop at the layer), about as many full forward passes as there are converted layers.
A solution is kept only when it lowers the layer's calibration error, so a refit never makes a layer worse.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .calibration import batches, hooks
from .discovery import eval_mode
from .layer import GDWSConv2d


class _Reached(Exception):
    """Raised by a hook to stop a forward pass once the layer of interest has run."""


def _first_call(model: nn.Module, module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(input, output) of the first call of ``module`` when ``model`` runs on ``x``; the pass stops there."""
    seen: list[tuple[Tensor, Tensor]] = []

    def grab(name: str, mod: nn.Module, inp: Tensor, out: Tensor) -> None:
        seen.append((inp, out))
        raise _Reached

    with hooks({"target": module}, grab):
        try:
            model(x)
        except _Reached:
            pass
    if not seen:
        raise ValueError(f"{type(module).__name__} was not called in the forward pass")
    return seen[0]


def output_at(model: nn.Module, module: nn.Module, x: Tensor) -> Tensor:
    """The output of ``module`` (first call) when ``model`` runs on ``x``; the forward pass stops there."""
    return _first_call(model, module, x)[1]


def input_at(model: nn.Module, module: nn.Module, x: Tensor) -> Tensor:
    """The input of ``module`` (first call) when ``model`` runs on ``x``; the forward pass stops there."""
    return _first_call(model, module, x)[0]


def _centred_rows(t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """t [N, F, ...] as rows [R, F] (one per sample and position), minus their mean, in t's dtype and on its device;
    that mean [F] (in t's dtype: exactly what was subtracted) and the centred rows' sum [F] (what the rounding of the
    mean and of the subtraction left), both as float64 on the CPU."""
    f, count = t.shape[1], t.shape[0] * math.prod(t.shape[2:])
    # any value near the mean centres the rows; the exact sums follow from the residual sum (a small term)
    mean = t.mean([0, *range(2, t.dim())]) if count else t.new_zeros(f)
    rows = torch.empty(t.movedim(1, -1).shape, dtype=t.dtype, device=t.device)
    torch.sub(t.movedim(1, -1), mean, out=rows)  # the move to rows and the centring in one pass
    rows = rows.reshape(count, f)
    return rows, mean.to("cpu", torch.float64), rows.sum(0).to("cpu", torch.float64)


def _gram(a: Tensor, block: int = 384) -> Tensor:
    """a^T a [F, F] of rows a [R, F] from its upper block triangle, mirrored: about (b + 1) / 2b of the product's
    multiply-adds for b column blocks of about ``block`` (torch has no symmetric rank-k product); measured 35-45 %
    faster than a.T @ a for F from 600 to 4,600 on a CPU, the same numbers."""
    f = a.shape[1]
    b = max(1, round(f / block))
    if b == 1:
        return a.T @ a
    edges = [round(i * f / b) for i in range(b + 1)]
    out = a.new_empty(f, f)
    for lo, hi in zip(edges, edges[1:]):
        out[lo:hi, lo:] = a[:, lo:hi].T @ a[:, lo:]
        out[hi:, lo:hi] = out[lo:hi, hi:].T
    return out


class Moments:
    """[Z 1]^T [Z 1] (``gram``), [Z 1]^T Y (``cross``) and ||Y||^2 (``target_sq``) of feature rows Z and target rows Y,
    accumulated in float64 over batches (the column of ones fits a bias).

    Each batch's products run in ``dtype``, by default the activations' own (float32 for a float32 network: about
    twice float64's speed on a CPU, and no float64 copy of the rows), on rows centred by the batch mean, and the
    mean's terms are added in float64 (Z = Zc + 1 m^T gives Z^T Z = Zc^T Zc + s m^T + m s^T + R m m^T, s = Zc^T 1):
    a product's rounding then scales with the spread of the values, not with their mean, which is large after a
    ReLU.
    """

    def __init__(self, features: int, targets: int, dtype: torch.dtype | None = None) -> None:
        self.dtype = dtype  # the products' dtype; None: the activations' own
        self.gram = torch.zeros(features + 1, features + 1, dtype=torch.float64)
        self.cross = torch.zeros(features + 1, targets, dtype=torch.float64)
        self.target_sq = 0.0

    def add(self, z: Tensor, y: Tensor) -> None:
        """One batch: features z [N, F, ...] and targets y [N, M, ...], one row per sample and trailing position."""
        if self.dtype is not None:
            z, y = z.to(self.dtype), y.to(self.dtype)
        (zc, mz, sz), (yc, my, sy) = _centred_rows(z), _centred_rows(y)
        r, f = zc.shape
        half = sz + r / 2 * mz  # s m^T + m s^T + R m m^T = h m^T + m h^T, h = s + R m / 2
        self.gram[:f, :f].add_(_gram(zc).cpu()).addr_(half, mz).addr_(mz, half)
        ones = sz + r * mz  # Z^T 1
        self.gram[:f, f] += ones
        self.gram[f, :f] += ones
        self.gram[f, f] += r
        self.cross[:f].add_((zc.T @ yc).cpu()).addr_(sz, my).addr_(mz, sy + r * my)
        self.cross[f] += sy + r * my
        self.target_sq += float(yc.square().sum(dtype=torch.float64) + 2 * (sy @ my) + r * (my @ my))


@dataclass
class RefitStats:
    """Relative calibration output error of one layer, ||y - y_hat||^2 / ||y||^2, before and after the refit."""

    before: float
    after: float
    applied: bool


def sq_error(w: Tensor, gram: Tensor, cross: Tensor, target_sq: float) -> float:
    """||Y - Z w||^2 from the moments Z^T Z (gram), Z^T Y (cross) and ||Y||^2 (target_sq)."""
    return target_sq - 2 * float((w * cross).sum()) + float((w * (gram @ w)).sum())


def _solve(gram: Tensor, cross: Tensor, ridge: float) -> Tensor:
    """argmin_w ||Z w - Y||^2 + lambda ||w||^2 from Z^T Z and Z^T Y, lambda = ridge * tr(Z^T Z) / dim."""
    dim = gram.shape[0]
    lam = ridge * float(torch.diagonal(gram).sum()) / dim
    for _ in range(12):  # a rank-deficient Z^T Z (zero or duplicate intermediate channels) needs a larger ridge
        shifted = gram.clone()
        shifted.diagonal().add_(lam)
        factor, info = torch.linalg.cholesky_ex(shifted)
        if int(info) == 0:
            return torch.cholesky_solve(cross, factor)
        lam = max(lam * 10, 1e-12)
    return torch.linalg.lstsq(gram, cross).solution


class PointwiseSystem:
    """The Moments of one GDWS layer's pointwise refit: Z the depthwise outputs, Y the original conv's outputs."""

    def __init__(self, layer: GDWSConv2d) -> None:
        if not isinstance(layer, GDWSConv2d):
            raise ValueError(f"expected a GDWSConv2d in the converted model, got {type(layer).__name__}")
        self.layer = layer
        self.moments = Moments(layer.num_intermediate, layer.out_channels)

    def add(self, x: Tensor, y: Tensor) -> None:
        """One batch: ``x`` the layer's input in the converted network, ``y`` the original conv's output."""
        layer = self.layer
        # G = 0: no feature, only the bias can be fitted
        z = layer.depthwise(x.index_select(1, layer.index)) if layer.depthwise is not None else y[:, :0]
        self.moments.add(z, y)

    def solve(self, ridge: float) -> RefitStats:
        """Write the least-squares pointwise stage into the layer where it lowers the error; the errors."""
        layer, m = self.layer, self.moments
        gram, cross, target_sq = m.gram, m.cross, m.target_sq
        current = _current(layer)
        solution = _solve(gram, cross, ridge)
        before = sq_error(current, gram, cross, target_sq)
        after = sq_error(solution, gram, cross, target_sq)
        applied = bool(torch.isfinite(solution).all()) and after < before
        if applied:
            _assign(layer, solution)
        norm = max(target_sq, torch.finfo(torch.float64).tiny)
        return RefitStats(max(before, 0.0) / norm, max(after if applied else before, 0.0) / norm, applied)


def layer_pairs(original: nn.Module, converted: nn.Module, name: str, images: Tensor,
                batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Per batch, (input of layer ``name`` in ``converted``, output of conv ``name`` in ``original``): each from a
    forward pass that stops at the layer (the layer-by-layer path: one partial pass per network and layer)."""
    layer, conv = converted.get_submodule(name), original.get_submodule(name)
    with torch.no_grad(), eval_mode(original), eval_mode(converted):
        for x in batches(images, converted, batch_size):
            yield input_at(converted, layer, x), output_at(original, conv, x)


def refit_layer(original: nn.Module, converted: nn.Module, name: str, images: Tensor, batch_size: int = 64,
                ridge: float = 1e-6) -> RefitStats:
    """Refit the pointwise stage and bias of the GDWSConv2d ``name`` of ``converted`` (see the module docstring)."""
    layer = converted.get_submodule(name)
    if not isinstance(layer, GDWSConv2d):
        raise ValueError(f"'{name}' is not a GDWSConv2d in the converted model")
    system = PointwiseSystem(layer)
    with torch.no_grad():
        for x, y in layer_pairs(original, converted, name, images, batch_size):
            system.add(x, y)
        return system.solve(ridge)


def _current(layer: GDWSConv2d) -> Tensor:
    """The layer's pointwise weights and bias as one [(G + 1), M] float64 matrix (bias in the last row)."""
    if layer.pointwise is not None:
        w = layer.pointwise.weight[:, :, 0, 0].T
        bias = layer.pointwise.bias
    else:
        w = torch.zeros(0, layer.out_channels, device=layer.sq_error.device)
        bias = layer.bias
    b = bias if bias is not None else torch.zeros(layer.out_channels, device=w.device)
    return torch.cat([w, b[None]]).detach().to(torch.float64).cpu()


def _assign(layer: GDWSConv2d, w: Tensor) -> None:
    """Write a [(G + 1), M] solution into the layer, adding a bias where the layer had none (a fitted offset)."""
    weight, bias = w[:-1].T, w[-1]
    with torch.no_grad():
        if layer.pointwise is not None:
            pw = layer.pointwise
            pw.weight.copy_(weight[:, :, None, None].to(pw.weight))
            if pw.bias is None:
                pw.bias = nn.Parameter(torch.zeros_like(pw.weight[:, 0, 0, 0]))
            pw.bias.copy_(bias.to(pw.weight))
        else:
            if layer.bias is None:
                layer.bias = nn.Parameter(torch.zeros(layer.out_channels, device=layer.sq_error.device))
            layer.bias.copy_(bias.to(layer.bias))


def refit_pointwise(original: nn.Module, converted: nn.Module, names: list[str], images: Tensor,
                    batch_size: int = 64, ridge: float = 1e-6) -> dict[str, RefitStats]:
    """Refit every named GDWS layer of ``converted`` in the given (forward) order; {name: RefitStats}."""
    return {n: refit_layer(original, converted, n, images, batch_size, ridge) for n in names}
