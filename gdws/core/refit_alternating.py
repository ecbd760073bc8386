"""Alternating least-squares refit of both GDWS stages on calibration data (data-aware GDWS, beyond the paper).

The pointwise refit (gdws.core.refit) fixes the depthwise kernels. With the pointwise weights P [M, G] and bias
b fixed instead, the layer output is linear in the depthwise kernels as well:

    y_hat_o = sum_i P[o, i] d_i^T p_{c(i)} + b_o

(d_i the K*K kernel of intermediate channel i, c(i) the input channel it reads, p_c that channel's K*K patch).
So the two stages can be solved in turn, each step a closed-form least-squares solve that cannot raise the
error (ridge aside: the best step is kept). Both solves need only the moments of the layer's input patches
q = [p_1; ...; p_C; 1] against the target y, taken in one streaming pass per layer (the same passes and the same
target as the pointwise refit: converted network's input to the layer, original conv's output):

    U = sum q q^T   [(CKK+1)^2],   V = sum y q^T   [M, CKK+1],   sum ||y||^2

pointwise step: with A [(G+1), CKK+1] mapping q to [z; 1], Z^T Z = A U A^T and Z^T Y = A V^T;
depthwise step: the normal matrix is (P^T P)[i, i'] * U[c(i) block, c(i') block] (G*K*K unknowns) and the
right-hand side the c(i) block of P^T (V - b sum p^T), row i. It is solved jointly up to JOINT_LIMIT unknowns
(`_depthwise_joint`); wide layers (G*K*K of 10^4 and more: GBs and minutes per solve) get one block Gauss-Seidel
sweep over the input channels per round instead, each block (the g_c kernels reading channel c) solved exactly
(`_depthwise_sweep`): the same optimum in the limit, reached more slowly.
Memory: U in float64, (CKK+1)^2 numbers (170 MB for a 512-channel 3x3 layer), and at most 170 MB for the joint
system or G x CKK for the sweep. Time per layer: the pass (rows x (CKK+1)^2 multiply-adds per batch for U) and
per round one Cholesky of size G*K*K or O(G^2 CKK) for a sweep; refit_pointwise's cost is the pass alone, with
(G+1)^2 instead of (CKK+1)^2.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .alphas import unfold_input
from .layer import GDWSConv2d
from .refit import Moments, RefitStats, _assign, _current, _solve, layer_pairs, refit_layer, sq_error


class PatchSystem:
    """(U, V, sum ||y||^2) of one GDWS layer (see the module docstring): the Moments of its input patches and the
    original conv's output, accumulated in float64 over batches."""

    def __init__(self, layer: GDWSConv2d) -> None:
        self.layer = layer
        ckk = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
        # float64 products: the depthwise step solves systems built from blocks of U, whose conditioning amplifies
        # float32 sums' rounding far beyond the float32 weights' own (measured against brute-force least squares)
        self.moments = Moments(ckk, layer.out_channels, torch.float64)

    @property
    def u(self) -> Tensor:
        return self.moments.gram

    @property
    def v(self) -> Tensor:
        return self.moments.cross.T

    @property
    def target_sq(self) -> float:
        return self.moments.target_sq

    def add(self, x: Tensor, y: Tensor) -> None:
        """One batch: ``x`` the layer's input in the converted network, ``y`` the original conv's output."""
        self.moments.add(unfold_input(self.layer, x), y)  # the patches the layer reads, [N, CKK, P]

    def solve(self, rounds: int, ridge: float) -> RefitStats:
        """Pointwise refit, then ``rounds`` rounds of (depthwise step, pointwise step); the best step is kept."""
        return _alternate(self.layer, self.u, self.v, self.target_sq, rounds, ridge)


def patch_moments(original: nn.Module, converted: nn.Module, name: str, images: Tensor,
                  batch_size: int = 64) -> tuple[Tensor, Tensor, float]:
    """(U, V, sum ||y||^2) of GDWS layer ``name`` (see the module docstring), streamed over ``images``."""
    system = PatchSystem(converted.get_submodule(name))
    with torch.no_grad():
        for x, y in layer_pairs(original, converted, name, images, batch_size):
            system.add(x, y)
    return system.u, system.v, system.target_sq


def _padded(d: Tensor, index: Tensor, channels: int) -> tuple[Tensor, Tensor]:
    """The kernels d [G, KK] grouped by input channel, [C, g_max, KK] (zero rows after a channel's own), and each
    kernel's row in that layout flattened to [C * g_max] (index is sorted: channel by channel)."""
    counts = torch.bincount(index, minlength=channels)
    g_max = int(counts.max()) if index.numel() else 0
    first = torch.cumsum(counts, 0) - counts
    slot = index * g_max + torch.arange(index.numel()) - first[index]
    out = d.new_zeros(channels * g_max, d.shape[1])
    out[slot] = d
    return out.reshape(channels, g_max, -1), slot


def _stage_moments(d: Tensor, index: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Z^T Z = A U A^T [(G+1)^2] and Z^T Y = A V^T [(G+1), M] of depthwise kernels d [G, KK], where row i of A maps q
    to z_i = d_i^T p_{c(i)} (its only non-zeros: d_i in channel index[i]'s columns) and the last row keeps the 1.
    A is never formed: one batched product per input channel, (G + 1) * CKK * KK multiply-adds instead of the
    (G + 1) * (CKK + 1)^2 of a dense A U."""
    g_total, kk = d.shape
    channels = (u.shape[0] - 1) // kk
    dp, slot = _padded(d, index, channels)                                            # [C, g_max, KK]
    au = torch.bmm(dp, u[:-1].reshape(channels, kk, -1)).reshape(-1, u.shape[1])[slot]  # rows of A U: [G, CKK+1]
    au = torch.cat([au, u[-1:]])
    blocks = au[:, :-1].reshape(g_total + 1, channels, kk).transpose(0, 1)            # [C, G+1, KK]
    gram = torch.bmm(blocks, dp.transpose(1, 2)).transpose(0, 1).reshape(g_total + 1, -1)[:, slot]
    gram = torch.cat([gram, au[:, -1:]], 1)
    cross = torch.bmm(dp, v[:, :-1].reshape(-1, channels, kk).permute(1, 2, 0)).reshape(-1, v.shape[0])[slot]
    return gram, torch.cat([cross, v[:, -1][None]])


#: Largest number of depthwise unknowns (G * KK) solved jointly: (G KK)^2 float64 numbers, 170 MB at this size.
#: Beyond it a round makes one block Gauss-Seidel sweep over the input channels instead.
JOINT_LIMIT = 4608


def _pointwise_terms(w: Tensor, u: Tensor, v: Tensor, g_total: int) -> tuple[Tensor, Tensor]:
    """P^T P [G, G] and P^T (V - b sum p^T) [G, CKK] of the pointwise weights and bias w [(G+1), M]: the two
    factors both depthwise solves are built from."""
    p, b = w[:g_total].T, w[g_total]                                   # [M, G], [M]
    return p.T @ p, p.T @ (v[:, :-1] - b[:, None] * u[-1, :-1][None])


def _depthwise_joint(w: Tensor, u: Tensor, v: Tensor, index: Tensor, kk: int, ridge: float) -> Tensor:
    """The depthwise kernels [G, KK] minimising the error for the pointwise weights and bias w [(G+1), M], all
    jointly: normal matrix (P^T P)[i, i'] * U[c(i) block, c(i') block] with G * KK unknowns."""
    g_total = index.numel()
    ptp, rhs = _pointwise_terms(w, u, v, g_total)
    c = (u.shape[0] - 1) // kk
    blocks = u[:-1, :-1].reshape(c, kk, c, kk)[index][:, :, index]     # [G, KK, G, KK]
    normal = (ptp[:, None, :, None] * blocks).reshape(g_total * kk, g_total * kk)
    rhs = rhs.reshape(g_total, c, kk)[torch.arange(g_total), index]    # [G, KK]: each row's own channel block
    return _solve(normal, rhs.reshape(-1, 1), ridge).reshape(g_total, kk)


def _depthwise_sweep(depthwise: Tensor, w: Tensor, u: Tensor, v: Tensor, index: Tensor, kk: int,
                     ridge: float) -> Tensor:
    """One block Gauss-Seidel sweep over the input channels: for each channel c in turn, the kernels of the
    intermediate channels reading c that minimise the error exactly, with the pointwise weights and bias
    w [(G+1), M] and every other kernel fixed. Returns the new depthwise kernels [G, KK].

    Each block solve has g_c * KK unknowns (normal matrix (P^T P)[I_c, I_c] kron U_cc); the coupling to the other
    channels is carried by model[i] = sum_i' (P^T P)[i, i'] U[:, c(i') block] d_i' [G, CKK], updated after each
    block. Memory O(G * CKK), time O(G^2 * CKK) per sweep, instead of the (G KK)^2 numbers and (G KK)^3 time of
    `_depthwise_joint`, which wide layers (G * KK of 10^4 and more) cannot afford.
    """
    d = depthwise.clone()
    ptp, target = _pointwise_terms(w, u, v, index.numel())
    full = u[:-1, :-1]
    members = [torch.nonzero(index == c)[:, 0] for c in range(full.shape[0] // kk)]
    model = torch.zeros_like(target)
    for c, rows in enumerate(members):
        if rows.numel():
            model += ptp[:, rows] @ (d[rows] @ full[c * kk:(c + 1) * kk])
    for c, rows in enumerate(members):
        if not rows.numel():
            continue
        cols = slice(c * kk, (c + 1) * kk)
        g = rows.numel()
        own = (ptp[rows][:, rows][:, None, :, None] * full[cols, cols][None, :, None, :]).reshape(g * kk, g * kk)
        # right-hand side of the block: its target minus what the OTHER kernels already explain
        rhs = target[rows, cols] - model[rows, cols] + (own @ d[rows].reshape(-1)).reshape(g, kk)
        new = _solve(own, rhs.reshape(-1, 1), ridge).reshape(g, kk)
        model += ptp[:, rows] @ ((new - d[rows]) @ full[cols])
        d[rows] = new
    return d


def refit_layer_alternating(original: nn.Module, converted: nn.Module, name: str, images: Tensor, rounds: int,
                            batch_size: int = 64, ridge: float = 1e-6) -> RefitStats:
    """Pointwise refit, then ``rounds`` rounds of (depthwise step, pointwise step) of GDWS layer ``name``; the
    step with the least calibration error is kept. A layer with G = 0 gets the bias-only pointwise refit."""
    layer = converted.get_submodule(name)
    if not isinstance(layer, GDWSConv2d):
        raise ValueError(f"'{name}' is not a GDWSConv2d in the converted model")
    if layer.depthwise is None:
        return refit_layer(original, converted, name, images, batch_size, ridge)
    u, v, target_sq = patch_moments(original, converted, name, images, batch_size)
    return _alternate(layer, u, v, target_sq, rounds, ridge)


def _alternate(layer: GDWSConv2d, u: Tensor, v: Tensor, target_sq: float, rounds: int, ridge: float) -> RefitStats:
    """The alternating refit of ``layer`` from its patch moments (refit_layer_alternating's solve)."""
    kk = layer.kernel_size[0] * layer.kernel_size[1]
    index = layer.index.cpu()
    depthwise = layer.depthwise.weight.detach().reshape(-1, kk).to(torch.float64).cpu()

    gram, cross = _stage_moments(depthwise, index, u, v)
    w = _current(layer)
    before = sq_error(w, gram, cross, target_sq)
    after, best = before, None
    for step in range(rounds + 1):
        if step:
            depthwise = (_depthwise_joint(w, u, v, index, kk, ridge) if index.numel() * kk <= JOINT_LIMIT
                         else _depthwise_sweep(depthwise, w, u, v, index, kk, ridge))
            gram, cross = _stage_moments(depthwise, index, u, v)
        w = _solve(gram, cross, ridge)
        err = sq_error(w, gram, cross, target_sq)
        if not (torch.isfinite(w).all() and torch.isfinite(depthwise).all()) or err >= after:
            break  # converged (or a degenerate solve): the best step so far stays
        after, best = err, (depthwise, w)
    applied = best is not None
    if applied:
        depthwise, w = best
        with torch.no_grad():
            layer.depthwise.weight.copy_(depthwise.reshape(layer.depthwise.weight.shape).to(layer.depthwise.weight))
        _assign(layer, w)
    norm = max(target_sq, torch.finfo(torch.float64).tiny)
    return RefitStats(max(before, 0.0) / norm, max(after, 0.0) / norm, applied)


def refit_alternating(original: nn.Module, converted: nn.Module, names: list[str], images: Tensor, rounds: int,
                      batch_size: int = 64, ridge: float = 1e-6) -> dict[str, RefitStats]:
    """refit_layer_alternating on every named GDWS layer of ``converted``, in the given (forward) order."""
    return {n: refit_layer_alternating(original, converted, n, images, rounds, batch_size, ridge) for n in names}
