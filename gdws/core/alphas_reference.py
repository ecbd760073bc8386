"""Straightforward eq. 8 (one sample, one class at a time, autograd.grad): the reference that the batched
`compute_alphas` is tested and benchmarked against. Slow by design; do not use it for real runs."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .discovery import eval_mode


def compute_alphas_loop(model: nn.Module, inputs: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """Eq. 8 on fixed `inputs` (already adversarial, or clean): for each sample, for each class j != yhat,
    autograd.grad of z_yhat - z_j w.r.t. the conv weights. Eval mode; .grad is never touched (autograd.grad)."""
    modules = dict(model.named_modules())
    weights = [modules[n].weight for n in layers]
    totals = [torch.zeros(w.shape[1], dtype=torch.float64) for w in weights]
    with eval_mode(model), torch.enable_grad():
        for x in inputs:
            z = model(x[None])[0]
            yhat = int(z.argmax())
            for j in range(z.numel()):
                if j == yhat:
                    continue
                margin = z[yhat] - z[j]
                grads = torch.autograd.grad(margin, weights, retain_graph=True)
                for t, w, g in zip(totals, weights, grads):
                    m, _, kh, kw = w.shape
                    per_channel = g.double().square().sum((0, 2, 3)).cpu()
                    t += per_channel / (2 * m * kh * kw * float(margin.detach()) ** 2)
    return {n: t / inputs.shape[0] for n, t in zip(layers, totals)}
