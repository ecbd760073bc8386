"""The per-channel error weights alpha of the paper's eq. 8 (spec section 6), batched.

alpha_{l,c} = 1/N sum_n sum_{j != yhat_n} ||d(z_yhat - z_j)/d w_l[:, c]||_F^2 / (2 M_l K_l^2 (z_yhat - z_j)^2)

How it is batched (exact, no approximation). In eval mode every sample is processed independently, so one ordinary
batched forward pass IS the set of per-sample forward passes. With detached parameters (torch.func.functional_call)
the graph only runs through activations, and one backward pass vmapped over the K-1 margin cotangents
(autograd.grad with is_grads_batched=True) gives every sample's and every margin's gradient w.r.t. each target conv's
output, delta [K-1, N, M, P]. The per-sample weight gradient is delta @ unfold(input)^T; we only need its squared
norm per input channel, weighted and summed over the margins, computed either directly or, when cheaper (small P),
through the margin-weighted Gram matrix A = sum_j w_j delta_j^T delta_j, since
sum_j w_j ||delta_j X_c^T||^2 = tr(X_c A X_c^T). Per-sample weight gradients of the whole network are never stored.

Cost floor: the K-1 margin cotangents span a (K-1)-dim space, so any exact method needs K-1 backward passes through
the layers above the first target conv; this one adds no weight-gradient backward and batches all of them.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from .shapes import conv_output_length, conv_pads
from .discovery import eval_mode, model_device_dtype, skip_reasons, trace_layers
from .layer import check_conv

_MAX_ELEMENTS = 1 << 25  # cap on the largest intermediate of the per-channel reduction (128 MB in float32)


def _detached_state(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Parameters detached from autograd (so nothing reaches .grad) and buffers, for functional_call."""
    return ({k: v.detach() for k, v in model.named_parameters()}, dict(model.named_buffers()))


def pgd_attack(model: nn.Module, images: Tensor, labels: Tensor, eps: float = 8 / 255, step_size: float = 2 / 255,
               steps: int = 10, random_start: bool = True, seed: int | None = 0, batch_size: int = 128) -> Tensor:
    """L_inf PGD maximising cross-entropy on `labels`, inputs kept in [0, 1]; model in eval mode (restored after).

    Torch only; parameters are detached, so no .grad is touched. Random start U(-eps, eps) drawn on CPU from `seed`
    for the whole set at once (results do not depend on batch_size up to floating point).
    """
    if eps < 0 or step_size < 0 or steps < 0:
        raise ValueError("eps, step_size and steps must be >= 0 (e.g. eps=8/255, step_size=2/255, steps=10)")
    device, dtype = model_device_dtype(model)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    noise = (torch.rand(images.shape, generator=gen) * 2 - 1) * eps if random_start else None
    params = _detached_state(model)
    out = []
    with eval_mode(model), torch.enable_grad():
        for i in range(0, images.shape[0], batch_size):
            x0 = images[i:i + batch_size].to(device, dtype)
            y = labels[i:i + batch_size].to(device)
            x = x0 if noise is None else (x0 + noise[i:i + batch_size].to(device, dtype)).clamp(0, 1)
            for _ in range(steps):
                x = x.detach().requires_grad_(True)
                loss = F.cross_entropy(functional_call(model, params, (x,)), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, x)
                x = torch.minimum(torch.maximum(x.detach() + step_size * grad.sign(), x0 - eps), x0 + eps).clamp(0, 1)
            out.append(x.detach().to(images.device))
    return torch.cat(out) if out else images.clone()


def unfold_input(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """Patches the conv reads, [N, C*kh*kw, H'*W'], for any padding kind and padding_mode."""
    (kh, kw), (dh, dw) = conv.kernel_size, conv.dilation
    pads = conv_pads(conv.kernel_size, conv.dilation, conv.padding)
    if any(pads):
        x = F.pad(x, pads, mode="constant" if conv.padding_mode == "zeros" else conv.padding_mode)
    x = x.contiguous()
    n, c, h, w = x.shape
    sh, sw = conv.stride
    # x is already padded: no padding left to add to the output-size formula
    oh, ow = conv_output_length(h, kh, sh, 0, dh), conv_output_length(w, kw, sw, 0, dw)
    st = x.stride()
    # a strided view [N, C, kh, kw, H', W'] copied once: same layout as F.unfold, several times faster on CPU
    patches = x.as_strided((n, c, kh, kw, oh, ow), (st[0], st[1], dh * st[2], dw * st[3], sh * st[2], sw * st[3]))
    return patches.reshape(n, c * kh * kw, oh * ow)


def weighted_channel_sq_norms(conv: nn.Conv2d, delta: Tensor, x: Tensor, weights: Tensor,
                              method: str | None = None) -> Tensor:
    """sum_{j, n} weights[j, n] * ||per-sample weight gradient_{j,n}[:, c]||_F^2 for every input channel c: [C].

    delta [J, N, M, H', W'] (gradients w.r.t. the conv output), x [N, C, H, W] (the conv input), weights [J, N] >= 0.
    Direct: G = delta X^T (cost J*M*P*C*kk per sample). Gram (cheaper when P is small): with
    A_n = sum_j w_jn delta_jn^T delta_jn ([P, P]), sum_j w_jn ||delta_jn X_c^T||^2 = tr(X_c A_n X_c^T).
    method: 'direct', 'gram' or None (the cheaper one).
    """
    j_, n_, m = delta.shape[:3]
    c, kk = conv.in_channels, conv.kernel_size[0] * conv.kernel_size[1]
    p = delta.shape[-1] * delta.shape[-2]
    d = delta.reshape(j_, n_, m, p)
    w = weights.to(d.dtype)
    gram = j_ * m * p * p + c * kk * p * p < j_ * m * p * c * kk if method is None else method == "gram"
    per_sample = (j_ * m * p + p * p + 2 * c * kk * p) if gram else (j_ * m * c * kk + c * kk * p)
    step = max(1, _MAX_ELEMENTS // per_sample)
    total = torch.zeros(c, dtype=torch.float64, device=delta.device)
    for i in range(0, n_, step):
        xs = unfold_input(conv, x[i:i + step])  # [n, C*kk, P]
        n = xs.shape[0]
        if gram:
            scaled = (d[:, i:i + step] * w[:, i:i + step, None, None].sqrt()).transpose(0, 1).reshape(n, j_ * m, p)
            a = scaled.transpose(1, 2) @ scaled  # [n, P, P]
            s = ((xs @ a) * xs).reshape(n, c, kk * p).sum((0, 2))
        else:
            grads = d[:, i:i + step].transpose(0, 1).reshape(n, j_ * m, p) @ xs.transpose(1, 2)  # [n, J*M, C*kk]
            sq = grads.square_().reshape(n, j_, m, c, kk).sum((2, 4))  # [n, J, C]
            s = (sq * w[:, i:i + step].T[..., None]).sum((0, 1))
        total += s.double()
    return total


def _alpha_sums(model: nn.Module, params: tuple, x: Tensor, convs: dict[str, nn.Conv2d]) -> dict[str, Tensor]:
    """Sum over the samples of x of eq. 8's inner sum, per layer: {name: float64 [C]}."""
    captured: dict[str, tuple[Tensor, Tensor]] = {}

    def hook(name: str):
        def fn(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            if name in captured:
                raise ValueError(f"layer '{name}' runs more than once per forward; pass layers= without it")
            # d z / d probe = d z / d output; a separate zero leaf stays valid even if later modules work in place
            # (e.g. ReLU(inplace=True)), and the input is cloned for the same reason
            probe = torch.zeros_like(output, requires_grad=True)
            captured[name] = (inputs[0].detach().clone(), probe)
            return output + probe
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in convs.items()]
    try:
        z = functional_call(model, params, (x,))
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in convs if n not in captured]
    if missing:
        raise ValueError(f"layers not used in the forward pass: {missing}; pass layers= with used Conv2d names")
    k = z.shape[1]
    if z.dim() != 2 or k < 2:
        raise ValueError(f"the model must return logits [N, K] with K >= 2 classes, got shape {tuple(z.shape)}")
    yhat = z.argmax(1)
    ar = torch.arange(k - 1, device=z.device)
    others = ar[None] + (ar[None] >= yhat[:, None])  # [N, K-1]: every class but yhat
    margins = (z.gather(1, yhat[:, None]) - z.gather(1, others)).detach()  # [N, K-1]
    cot = (F.one_hot(yhat, k)[None] - F.one_hot(others.T, k)).to(z.dtype)  # [K-1, N, K]
    names = list(convs)
    deltas = torch.autograd.grad(z, [captured[n][1] for n in names], grad_outputs=cot, is_grads_batched=True,
                                 allow_unused=True)
    if (margins == 0).any():
        warnings.warn("some logit margins are exactly 0 (tied classes); those terms are left out of the alphas")
    inv = torch.where(margins != 0, 0.5 / margins.double().square().clamp_min(torch.finfo(torch.float64).tiny),
                      torch.zeros((), dtype=torch.float64, device=z.device)).T  # [K-1, N]
    sums = {}
    for name, delta in zip(names, deltas):
        conv = convs[name]
        denom = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        if delta is None:  # the layer does not influence the logits
            sums[name] = torch.zeros(conv.in_channels, dtype=torch.float64)
            continue
        sums[name] = (weighted_channel_sq_norms(conv, delta.detach(), captured[name][0], inv) / denom).cpu()
    return sums


def _resolve_layers(model: nn.Module, example: Tensor, layers: Sequence[str] | None) -> dict[str, nn.Conv2d]:
    modules = dict(model.named_modules())
    if layers is None:  # exactly the layers convert() converts by default
        layers = [n for n, r in skip_reasons(trace_layers(model, example)).items() if not r]
    for n in layers:
        if n not in modules:
            raise ValueError(f"'{n}' is not a module of the model; pass names from model.named_modules()")
        check_conv(modules[n])
    return {n: modules[n] for n in layers}


def compute_alphas(model: nn.Module, images: Tensor, labels: Tensor | None = None, attack: str | None = "pgd",
                   eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10, random_start: bool = True,
                   seed: int | None = 0, batch_size: int = 32, layers: Sequence[str] | None = None,
                   ) -> dict[str, Tensor]:
    """Eq. 8 alphas {layer name: float64 Tensor [C]} over the N samples of `images` (in [0, 1], [N, 3, H, W]).

    The model runs in eval mode (every module's mode is restored after). attack='pgd': inputs are PGD adversarial
    examples (L_inf eps, `steps` steps of `step_size`, random start from `seed`, CE on `labels`; if labels is None
    the model's clean predictions are used as labels); attack=None: clean inputs. yhat is the prediction at the
    (adversarial) input. Gradients are clean: parameters are detached, nothing is read from or written to .grad.
    layers=None: the layers convert() converts by default. batch_size: samples per chunk (bounds memory).
    """
    if attack not in ("pgd", None):
        raise ValueError(f"attack must be 'pgd' or None (clean inputs), got {attack!r}")
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] == 0:
        raise ValueError("images must be a non-empty tensor [N, C, H, W] of inputs in [0, 1]")
    if labels is not None and (labels.dim() != 1 or labels.shape[0] != images.shape[0]):
        raise ValueError(f"labels must be a LongTensor [{images.shape[0]}] (one class per image) or None")
    device, dtype = model_device_dtype(model)
    convs = _resolve_layers(model, images[:1].to(device, dtype), layers)
    params = _detached_state(model)
    if attack == "pgd":
        if labels is None:
            with eval_mode(model), torch.no_grad():
                labels = torch.cat([functional_call(model, params, (images[i:i + batch_size].to(device, dtype),))
                                    .argmax(1).cpu() for i in range(0, images.shape[0], batch_size)])
        images = pgd_attack(model, images, labels, eps, step_size, steps, random_start, seed, batch_size)
    totals = {n: torch.zeros(m.in_channels, dtype=torch.float64) for n, m in convs.items()}
    with eval_mode(model), torch.enable_grad():
        for i in range(0, images.shape[0], batch_size):
            sums = _alpha_sums(model, params, images[i:i + batch_size].to(device, dtype), convs)
            for n in totals:
                totals[n] += sums[n]
    return {n: t / images.shape[0] for n, t in totals.items()}
