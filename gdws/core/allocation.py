"""Optimal GDWS approximations of a conv weight: batched SVD, LEGO and MEGO (spec sections 3-4).

All decompositions run in float64 so the error bookkeeping (sum of dropped weighted sigma^2) is exact
to double precision; the returned kernels are cast back to the weight's dtype and device.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor


def compose_weight(depthwise: Tensor, pointwise: Tensor, index: Tensor, in_channels: int) -> Tensor:
    """Equivalent dense weight What [M, C, kh, kw] of GDWS kernels.

    depthwise [G, kh, kw], pointwise [M, G], index [G] (input channel read by each intermediate channel).
    What[:, c] = sum over the intermediate channels k reading c of pointwise[:, k] (outer) depthwise[k].
    """
    g_total, kh, kw = depthwise.shape
    m = pointwise.shape[0]
    contrib = pointwise[:, :, None] * depthwise.reshape(g_total, kh * kw)[None]  # [M, G, kh*kw]
    out = pointwise.new_zeros(m, in_channels, kh * kw).index_add_(1, index, contrib)
    return out.reshape(m, in_channels, kh, kw)


def index_from_g(g: Tensor) -> Tensor:
    """Input channel of each intermediate channel: [0]*g_0 + [1]*g_1 + ... (LongTensor [G])."""
    return torch.repeat_interleave(torch.arange(g.numel(), device=g.device), g)


@dataclass
class GDWSPlan:
    """A GDWS approximation of one conv weight.

    g: LongTensor [C]; depthwise: [G, kh, kw] (channel 0's g_0 kernels first);
    pointwise: [M, G]; error: weighted squared Frobenius error sum_c alpha_c ||W_c - What_c||^2 (whitened
    decomposition: the alpha-weighted expected squared output error on the calibration inputs).
    """

    g: Tensor
    depthwise: Tensor
    pointwise: Tensor
    error: float

    @property
    def index(self) -> Tensor:
        """Input channel read by each intermediate channel (LongTensor [G])."""
        return index_from_g(self.g).to(self.depthwise.device)

    def weight_hat(self) -> Tensor:
        """The equivalent dense weight What [M, C, kh, kw]."""
        return compose_weight(self.depthwise, self.pointwise, self.index, self.g.numel())


def _check_weight(weight: Tensor) -> None:
    if not isinstance(weight, Tensor) or weight.dim() != 4 or not weight.is_floating_point():
        raise ValueError("weight must be a floating-point tensor of shape [M, C, kh, kw] (a Conv2d weight)")
    if not torch.isfinite(weight).all():
        raise ValueError("weight contains NaN or inf; pass a finite conv weight")


def _check_alpha(alpha: Tensor | None, channels: int) -> Tensor:
    if alpha is None:
        return torch.ones(channels, dtype=torch.float64)
    alpha = torch.as_tensor(alpha).detach()
    if alpha.shape != (channels,):
        raise ValueError(f"alpha must have shape [{channels}] (one weight per input channel), got {tuple(alpha.shape)}")
    alpha = alpha.to(dtype=torch.float64, device="cpu")
    if not torch.isfinite(alpha).all() or (alpha < 0).any():
        raise ValueError("alpha must be finite and >= 0; pass None for unweighted error (all ones)")
    return alpha


def whitening_factors(second_moment: Tensor, ridge: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Lower Cholesky factors L_c of S_c + lambda_c I, and which channels carry any signal.

    second_moment: float64 [C, k, k], S_c = E[p p^T] of channel c's input patches (k = kh*kw). The ridge is
    lambda_c = ridge * tr(S_c) / k (scaled to the channel's own energy); where S_c + lambda_c I is still not
    positive definite in float64 (rank-deficient S_c: a constant input), lambda_c grows tenfold until it is.
    A channel with tr(S_c) = 0 (an input that is always zero, e.g. a dead ReLU channel) gets L_c = I and
    active False: its kernels are the weight-only ones and the caller zeroes its scores (it adds no output error).
    Returns (L [C, k, k] float64, active bool [C]).
    """
    if not torch.isfinite(second_moment).all():
        raise ValueError("second_moment contains NaN or inf; the calibration inputs must be finite")
    c, k, _ = second_moment.shape
    s = second_moment.to(torch.float64)
    s = (s + s.transpose(1, 2)) / 2  # exact symmetry for the factorisation
    trace = torch.diagonal(s, dim1=1, dim2=2).sum(1)
    active = trace > trace.max().clamp_min(0) * 1e-12 if c else trace > 0
    eye = torch.eye(k, dtype=torch.float64, device=s.device)
    chol = eye.expand(c, k, k).clone()
    todo = active.clone()
    scale = max(float(ridge), 0.0)
    for _ in range(20):  # ridge, then x10 each try: 1e-6 of the trace reaches 1e13 x the trace at the latest
        if not todo.any():
            break
        lam = (scale * trace[todo] / k)[:, None, None]
        factor, info = torch.linalg.cholesky_ex(s[todo] + lam * eye)
        ok = info == 0
        idx = todo.nonzero().squeeze(1)
        chol[idx[ok]] = factor[ok]
        todo[idx[ok]] = False
        scale = scale * 10 if scale > 0 else 1e-12
    if todo.any():  # unreachable for finite input; kept as a guard so no NaN can reach a weight
        raise ValueError("could not factor the calibration second moments of some channels")
    return chol, active


def _left_apply(a: Tensor, mats: Tensor, op) -> Tensor:
    """op(a, X) for every X = mats[c] ([C, M, r]) as ONE op on [M, C*r]: a broadcast batch would copy a [M, M]
    matrix C times (1 GB and seconds for a 512-channel layer)."""
    c, m, r = mats.shape
    return op(a, mats.permute(1, 0, 2).reshape(m, c * r)).reshape(m, c, r).permute(1, 0, 2)


class Decomposition:
    """Per-input-channel SVD of a conv weight, computed once with one batched SVD.

    W_c = w[:, c].reshape(M, kh*kw) = U_c S_c V_c^T for all c at once. `scores[c, i]` = alpha_c * sigma_{c,i}^2
    (float64 [C, r], r = min(M, kh*kw), descending in i). `plan(g)` keeps the top g_c components of each channel,
    which is optimal for that g (Eckart-Young).

    Whitened (data-aware, beyond the paper): with `second_moment` S_c = E[p p^T] of channel c's input patches
    (float64 [C, k, k], k = kh*kw) and S_c + ridge = L_c L_c^T, the SVD is taken of W_c L_c = U S V^T instead;
    depthwise kernels are the rows of V_g^T L_c^{-1} and pointwise columns U_g S_g. Then
    E||(W_c - What_c) p||^2 = ||(W_c - What_c) L_c||_F^2 = the sum of the dropped sigma_i^2 exactly, so scores are
    the expected squared output error of each channel's contribution (times alpha_c), and keeping the top g_c
    components is the optimal rank-g_c approximation in that metric. S_c = I gives the weight-only decomposition.

    Output weighting: with `output_moment` F = E[sum over positions of g g^T] ([M, M], g the gradient of the loss
    at the layer's output) and F = R R^T, the SVD is taken of R^T W_c L_c and pointwise columns are R^{-T} U_g S_g;
    scores are then tr(F dW_c S_c dW_c^T), the Kronecker-factored (K-FAC) second-order estimate of the loss increase
    per image, comparable across layers.
    """

    def __init__(self, weight: Tensor, alpha: Tensor | None = None, second_moment: Tensor | None = None,
                 ridge: float = 1e-6, output_moment: Tensor | None = None) -> None:
        _check_weight(weight)
        m, c, kh, kw = weight.shape
        self.shape = (m, c, kh, kw)
        self.dtype, self.device = weight.dtype, weight.device
        mats = weight.detach().to(torch.float64).permute(1, 0, 2, 3).reshape(c, m, kh * kw)
        alpha = _check_alpha(alpha, c)
        right_factor = left_factor = None
        if second_moment is not None:
            if second_moment.shape != (c, kh * kw, kh * kw):
                raise ValueError(f"second_moment must have shape [{c}, {kh * kw}, {kh * kw}] (one patch second "
                                 f"moment per input channel), got {tuple(second_moment.shape)}")
            right_factor, active = whitening_factors(second_moment.to(mats.device), ridge)
            mats = mats @ right_factor
            alpha = alpha * active.cpu().to(torch.float64)  # a silent input channel adds no output error
        if output_moment is not None:
            if output_moment.shape != (m, m):
                raise ValueError(f"output_moment must have shape [{m}, {m}] (output-gradient second moment), got "
                                 f"{tuple(output_moment.shape)}")
            factor, active = whitening_factors(output_moment.to(mats.device)[None], ridge)
            left_factor = factor[0]
            mats = _left_apply(left_factor.T, mats, lambda a, b: a @ b)
            alpha = alpha * float(active[0])  # no gradient reaches this layer: its error costs nothing
        u, s, vh = torch.linalg.svd(mats, full_matrices=False)  # [C,M,r], [C,r], [C,r,kh*kw]
        # rows of V^T L^{-1}: solve X L = V^T for X
        self._right = vh if right_factor is None else torch.linalg.solve_triangular(right_factor, vh, upper=False,
                                                                                    left=False)
        left = u * s[:, None, :]  # sigma goes into the pointwise stage (spec section 3)
        # R^{-T} U S: solve R^T X = U S for X
        self._left = left if left_factor is None else _left_apply(
            left_factor.T, left, lambda a, b: torch.linalg.solve_triangular(a, b, upper=True))
        self.scores = alpha[:, None] * s.cpu() ** 2

    @property
    def rank(self) -> int:
        """Number of components per channel, min(M, kh*kw)."""
        return self.scores.shape[1]

    def plan(self, g: Tensor) -> GDWSPlan:
        """The optimal plan for a given allocation g (LongTensor [C], 0 <= g_c <= rank)."""
        m, c, kh, kw = self.shape
        g = torch.as_tensor(g, dtype=torch.long).cpu()
        if g.shape != (c,) or (g < 0).any() or (g > self.rank).any():
            raise ValueError(f"g must be a LongTensor [{c}] with 0 <= g_c <= min(M, kh*kw) = {self.rank}")
        keep = torch.arange(self.rank)[None, :] < g[:, None]  # prefix of each channel's components
        error = float(self.scores[~keep].sum())
        keep_dev = keep.to(self._right.device)
        depthwise = self._right[keep_dev].reshape(-1, kh, kw)
        pointwise = self._left.transpose(1, 2)[keep_dev].transpose(0, 1).reshape(m, -1)
        cast = dict(dtype=self.dtype, device=self.device)
        return GDWSPlan(g=g, depthwise=depthwise.to(**cast), pointwise=pointwise.to(**cast), error=error)


def check_beta(beta: float) -> float:
    """Validate a LEGO error budget (finite, >= 0) and return it as a float."""
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0 (the allowed weighted squared error), got {beta!r}")
    return float(beta)


def check_max_channels(max_channels: int) -> int:
    """Validate a MEGO budget G_max (an int >= 0)."""
    if isinstance(max_channels, bool) or not isinstance(max_channels, numbers.Integral) or max_channels < 0:
        raise ValueError(f"max_channels must be an int >= 0 (the largest allowed G), got {max_channels!r}")
    return int(max_channels)


def lego_g(scores: Tensor, beta: float) -> Tensor:
    """LEGO allocation from a score matrix [C, r]: drop the smallest scores while their running sum <= beta."""
    flat = scores.reshape(-1)
    order = torch.argsort(flat, stable=True)
    n_drop = int((torch.cumsum(flat[order], 0) <= beta).sum())
    channel = order[:n_drop] // scores.shape[1]
    return scores.shape[1] - torch.bincount(channel, minlength=scores.shape[0])


def mego_g(scores: Tensor, max_channels: int) -> Tensor:
    """MEGO allocation from a score matrix [C, r]: keep the max_channels largest positive scores."""
    flat = scores.reshape(-1)
    order = torch.argsort(flat, descending=True, stable=True)
    # zero-score components cannot lower the error, so keeping them would only cost MACs
    n_keep = min(max_channels, int((flat > 0).sum()))
    return torch.bincount(order[:n_keep] // scores.shape[1], minlength=scores.shape[0])


def lego(weight: Tensor, beta: float, alpha: Tensor | None = None) -> GDWSPlan:
    """Error-constrained optimal GDWS (LEGO): the smallest G with weighted error <= beta.

    weight [M, C, kh, kw]; beta >= 0 (finite); alpha [C] >= 0 or None (all ones).
    Components are dropped from the smallest score alpha_c*sigma_{c,i}^2 upward while the dropped sum stays
    <= beta (equality allowed); beta >= total score gives G = 0.
    """
    beta = check_beta(beta)
    dec = Decomposition(weight, alpha)
    return dec.plan(lego_g(dec.scores, beta))


def mego(weight: Tensor, max_channels: int, alpha: Tensor | None = None) -> GDWSPlan:
    """Complexity-constrained optimal GDWS (MEGO): least weighted error with G <= max_channels.

    Keeps the max_channels largest scores (components with score 0 are never kept: they cannot lower the error).
    """
    max_channels = check_max_channels(max_channels)
    dec = Decomposition(weight, alpha)
    return dec.plan(mego_g(dec.scores, max_channels))
