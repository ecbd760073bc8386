"""HYDRA's importance scores (Sehwag et al. 2020): a learnable score per weight, the mask is the top-k of |score|.

The forward pass uses ``weight * mask(scores)``; the top-k selection has no useful derivative, so the gradient
reaching the mask is passed straight through to |score| (and by autograd through the absolute value to the
score). Scores start at ``sqrt(6 / fan_in) * w / max|w|``: proportional to |w| within a layer, so the first mask
is magnitude pruning.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gdws.prune.masking import FixedMask

SCORED_TYPES = (nn.Conv2d, nn.Linear)


def kept_count(numel: int, ratio: float) -> int:
    """How many of ``numel`` weights a layer keeps at pruning ``ratio``: round((1 - ratio) * numel), at least 1
    (a layer with no weight left would cut the network)."""
    return max(1, int(round((1.0 - ratio) * numel)))


class _TopK(torch.autograd.Function):
    """0/1 mask of the ``k`` largest entries; straight-through backward (the mask's gradient goes to the input)."""

    @staticmethod
    def forward(ctx, magnitude: Tensor, k: int) -> Tensor:  # noqa: D102
        mask = torch.zeros_like(magnitude)
        mask.view(-1)[magnitude.reshape(-1).topk(k, sorted=False).indices] = 1
        return mask

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        return grad, None


def topk_mask(scores: Tensor, k: int) -> Tensor:
    """Mask keeping exactly the ``k`` entries of largest |scores|, differentiable straight-through."""
    return _TopK.apply(scores.abs(), k)


def initial_scores(weight: Tensor) -> Tensor:
    """HYDRA's scaled initialisation ``sqrt(6 / fan_in) * w / max|w|`` (fan_in = inputs per output unit)."""
    fan_in = weight[0].numel()
    return math.sqrt(6.0 / fan_in) * weight.detach() / weight.detach().abs().max().clamp_min(torch.finfo(weight.dtype).tiny)


class ScoreMask(nn.Module):
    """Parametrization ``w -> w * topk_mask(scores, k)`` with the scores as its own parameter."""

    def __init__(self, weight: Tensor, ratio: float) -> None:
        super().__init__()
        self.k = kept_count(weight.numel(), ratio)
        self.scores = nn.Parameter(initial_scores(weight))

    def forward(self, w: Tensor) -> Tensor:
        """The masked weight."""
        return w * topk_mask(self.scores, self.k)

    def mask(self) -> Tensor:
        """The current 0/1 mask (no gradient)."""
        with torch.no_grad():
            return topk_mask(self.scores, self.k)


def scored_layers(model: nn.Module) -> list[str]:
    """Names of the layers HYDRA prunes: every Conv2d and Linear, first and last included."""
    return [name for name, m in model.named_modules() if isinstance(m, SCORED_TYPES)]


def attach_scores(model: nn.Module, ratio: float) -> list[str]:
    """Give each scored layer's ``weight`` a :class:`ScoreMask` (in place); returns the layers' names."""
    names = scored_layers(model)
    for name in names:
        layer = model.get_submodule(name)
        parametrize.register_parametrization(layer, "weight", ScoreMask(layer.weight, ratio))
    return names


def fix_masks(model: nn.Module) -> None:
    """Replace each :class:`ScoreMask` by a :class:`FixedMask` of its current mask, in place: the original
    (unmasked) weights come back as the parametrized tensors and the mask no longer changes."""
    for module in [m for m in model.modules() if isinstance(m, SCORED_TYPES)]:
        if parametrize.is_parametrized(module, "weight") and isinstance(module.parametrizations.weight[0], ScoreMask):
            mask = module.parametrizations.weight[0].mask()
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            parametrize.register_parametrization(module, "weight", FixedMask(mask))
