"""Calibration data for data-aware GDWS (beyond the paper): checked inputs and per-channel patch statistics.

A calibration set is a few hundred to a few thousand images the network sees in use (training images, never
the images accuracy is measured on). `calibration_images` checks it once, before any work, and holds it as one
CPU tensor (1,024 CIFAR images: 12.6 MB); every pass over it then streams batches, so no activation of the
whole set is ever held. `input_second_moments` gives, per conv, S_c = E[p p^T] of each input channel's
K x K patches (as the conv reads them: its padding, stride and dilation), in float64, the statistics of the
whitened decomposition (gdws.core.allocation.Decomposition).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from torch.func import functional_call

from .alphas import _detached_state, unfold_input
from .discovery import eval_mode, model_device_dtype


def calibration_images(calibration: Tensor | Iterable, example_input: Tensor) -> Tensor:
    """The calibration set as one CPU float tensor [N, C, H, W], checked against ``example_input``.

    calibration: a tensor [N, C, H, W], or an iterable of such batches or of (images, labels, ...) tuples (a
    DataLoader). Raises one ValueError for an empty set, a batch of the wrong shape (channels or image size
    differing from example_input's), or non-finite values.
    """
    if isinstance(calibration, Tensor):
        batches = [calibration]
    else:
        try:
            batches = [b[0] if isinstance(b, (tuple, list)) else b for b in calibration]
        except TypeError as exc:
            raise ValueError("calibration must be a tensor [N, C, H, W] of images or an iterable of batches "
                             f"(e.g. a DataLoader), got {type(calibration).__name__}") from exc
    want = tuple(example_input.shape[1:])
    for b in batches:
        if not isinstance(b, Tensor) or b.dim() != 4 or not b.is_floating_point():
            raise ValueError("calibration batches must be floating-point tensors [N, C, H, W], got "
                             f"{type(b).__name__}{'' if not isinstance(b, Tensor) else ' ' + str(tuple(b.shape))}")
        if tuple(b.shape[1:]) != want:
            raise ValueError(f"calibration images have shape {tuple(b.shape[1:])} (C, H, W) but the model is "
                             f"converted for inputs {want}: pass images with that many channels and that size")
        if not torch.isfinite(b).all():
            raise ValueError("calibration images contain NaN or inf; pass finite images")
    images = torch.cat([b.detach().cpu().float() for b in batches]) if batches else torch.empty(0)
    if images.shape[0] == 0:
        raise ValueError("the calibration set is empty; pass at least one image (e.g. 1,024 training images)")
    return images


def batches(images: Tensor, model: nn.Module, batch_size: int) -> Iterator[Tensor]:
    """``images`` in batches of ``batch_size`` on the model's device and dtype."""
    device, dtype = model_device_dtype(model)
    for i in range(0, images.shape[0], batch_size):
        yield images[i:i + batch_size].to(device, dtype)


@contextmanager
def hooks(modules: dict[str, nn.Module], fn) -> Iterator[None]:
    """Forward hooks ``fn(name, module, input, output)`` on each module, removed on exit (a value ``fn`` returns
    replaces the module's output, as with any forward hook)."""
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: fn(n, mod, inp[0], out))
               for n, m in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def channel_patch_gram(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """sum over samples and positions of p p^T for each input channel's patches: float64 [C, k, k], k = kh*kw.

    One product per (sample, channel) on the patches as unfolded ([N*C, k, P]: no copy), in x's dtype (sums of P
    products), summed over the samples in float64."""
    kk = conv.kernel_size[0] * conv.kernel_size[1]
    p = unfold_input(conv, x)  # [N, C*k, P]
    n, _, positions = p.shape
    p = p.reshape(n * conv.in_channels, kk, positions)
    return (p @ p.transpose(1, 2)).reshape(n, conv.in_channels, kk, kk).sum(0, dtype=torch.float64)


class PatchSums:
    """Running sums of each named conv's per-channel input patch Gram (channel_patch_gram) and position counts."""

    def __init__(self, convs: dict[str, nn.Module]) -> None:
        self.sums = {n: torch.zeros(c.in_channels, *(2 * [c.kernel_size[0] * c.kernel_size[1]]), dtype=torch.float64)
                     for n, c in convs.items()}
        self.counts = dict.fromkeys(convs, 0)

    def add(self, name: str, conv: nn.Module, x: Tensor, out: Tensor) -> None:
        """One call of conv ``name`` on input ``x`` (a hook's arguments)."""
        self.sums[name] += channel_patch_gram(conv, x.detach()).cpu()
        self.counts[name] += out.shape[0] * out.shape[-2] * out.shape[-1]

    def means(self) -> dict[str, Tensor]:
        """{conv name: S [C, k, k]}; one ValueError naming the convs that never ran."""
        missing = [n for n, k in self.counts.items() if k == 0]
        if missing:
            raise ValueError(f"layers not used in the forward pass of the calibration images: {missing}")
        return {n: self.sums[n] / self.counts[n] for n in self.sums}


def input_second_moments(model: nn.Module, names: list[str], images: Tensor,
                         batch_size: int = 64) -> dict[str, Tensor]:
    """{conv name: S [C, k, k]}: the mean over images and output positions of each channel's patch outer product.

    One eval-mode, no-grad pass over ``images`` with hooks on the named convs (a conv called several times per
    forward pools every call). Memory: one batch's patches of one layer at a time, in float64.
    """
    sums = PatchSums({n: model.get_submodule(n) for n in names})
    with eval_mode(model), torch.no_grad(), hooks({n: model.get_submodule(n) for n in names}, sums.add):
        for x in batches(images, model, batch_size):
            model(x)
    return sums.means()


def recalibrate_batchnorm(model: nn.Module, images: Tensor, batch_size: int = 64) -> int:
    """Re-estimate the running mean and variance of every BatchNorm of ``model`` that tracks them, in place: the
    averages over all of ``images`` (momentum None: a cumulative average, independent of the batch order), every
    other module in eval mode, no gradient. Returns how many BatchNorms were re-estimated."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    with eval_mode(model), torch.no_grad():
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()  # normalise by each batch's statistics while the running averages gather
        for x in batches(images, model, batch_size):
            model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return len(norms)


def layer_statistics(model: nn.Module, names: list[str], images: Tensor, batch_size: int, whiten: bool,
                     fisher: bool) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(input_second_moments if whiten, output_gradient_moments if fisher), in ONE pass when both are asked for
    (the Fisher pass's forward also sums the input patches: the same numbers as two passes, one forward less)."""
    if not fisher:
        return (input_second_moments(model, names, images, batch_size) if whiten else {}), {}
    sums = PatchSums({n: model.get_submodule(n) for n in names}) if whiten else None
    curvature = output_gradient_moments(model, names, images, batch_size, patches=sums)
    return (sums.means() if sums is not None else {}), curvature


def output_gradient_moments(model: nn.Module, names: list[str], images: Tensor, batch_size: int = 64,
                            seed: int = 0, patches: PatchSums | None = None) -> dict[str, Tensor]:
    """{conv name: F [M, M]}: E over images of sum over output positions of g g^T, g = d loss / d (conv output).

    The loss is the cross-entropy of the model's logits against labels SAMPLED from its own softmax (seeded, one
    uniform draw per image, so independent of batch_size), so
    F is the output factor of the Kronecker-factored Fisher information (K-FAC), i.e. the curvature of the
    divergence from the network's own predictions; no true labels are needed. Eval mode, parameters detached
    (nothing is written to .grad, no weight changes): forward and backward passes only. ``patches``: also add
    each layer's input patches to these sums (see layer_statistics).
    """
    convs = {n: model.get_submodule(n) for n in names}
    sums = {n: torch.zeros(c.out_channels, c.out_channels, dtype=torch.float64) for n, c in convs.items()}
    params = _detached_state(model)
    # one uniform draw per image, made up front: the sampled labels do not depend on the batch size
    draws = torch.rand(images.shape[0], 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    probes: dict[str, Tensor] = {}

    def probe(name: str, conv: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        # d loss / d probe = d loss / d output (a zero leaf added to the output: valid under in-place ops after it)
        if name in probes:
            raise ValueError(f"layer '{name}' runs more than once per forward; exclude it to use fisher weighting")
        if patches is not None:
            patches.add(name, conv, x, out)
        probes[name] = torch.zeros_like(out, requires_grad=True)
        return out + probes[name]

    with eval_mode(model), torch.enable_grad(), hooks(convs, probe):
        for start, x in zip(range(0, images.shape[0], batch_size), batches(images, model, batch_size)):
            probes.clear()
            logits = functional_call(model, params, (x,))
            cdf = logits.detach().double().softmax(1).cumsum(1).cpu()  # label = the class whose CDF step holds u
            u = draws[start:start + x.shape[0]]
            labels = (cdf < u).sum(1).clamp_max(logits.shape[1] - 1)
            loss = torch.nn.functional.cross_entropy(logits, labels.to(logits.device), reduction="sum")
            grads = torch.autograd.grad(loss, [probes[n] for n in names], allow_unused=True)
            for n, g in zip(names, grads):
                if g is not None:
                    # float64 (one copy): the factor is whitened and inverted, which amplifies float32 sums' rounding
                    rows = g.permute(0, 2, 3, 1).to(torch.float64, memory_format=torch.contiguous_format)
                    rows = rows.reshape(-1, g.shape[1])
                    sums[n] += (rows.T @ rows).cpu()
    return {n: sums[n] / images.shape[0] for n in names}
