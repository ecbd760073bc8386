"""Masks on parameters as torch parametrizations, and folding them into plain parameters.

A parametrization keeps the module an ordinary Conv2d/Linear/BatchNorm2d (GDWS conversion, torch-pruning and
the metrics see the usual types) while every access to ``weight`` returns the masked tensor. Folding replaces
it by that tensor: pruned entries become exact zeros of an ordinary ``nn.Parameter``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


class FixedMask(nn.Module):
    """Parametrization ``p -> p * mask`` with a constant 0/1 mask: masked entries are exactly zero in the forward
    pass and get zero gradient, so training keeps the sparsity pattern."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().clone())

    def forward(self, p: Tensor) -> Tensor:
        """The masked parameter."""
        return p * self.mask


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding parameter ``name`` (dotted) and the parameter's own name."""
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def attach_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Register a :class:`FixedMask` on each parameter named in ``masks`` (in place)."""
    for name, mask in masks.items():
        module, attr = _owner(model, name)
        parametrize.register_parametrization(module, attr, FixedMask(mask.to(getattr(module, attr).device)))


def fold_parametrizations(model: nn.Module) -> nn.Module:
    """Replace every parametrized parameter of ``model`` by its current (masked) value, in place.

    Returns ``model``, whose parameters are then ordinary ``nn.Parameter`` tensors with exact zeros where they
    were masked; every parameter is trainable again (pruning phases freeze some of them).
    """
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for attr in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


@torch.no_grad()
def sparsity(model: nn.Module, types: tuple[type, ...] = (nn.Conv2d, nn.Linear)) -> dict[str, float]:
    """Fraction of exact zeros in the ``weight`` of each layer of ``types`` (masked value when parametrized)."""
    return {name: float((m.weight == 0).float().mean()) for name, m in model.named_modules() if isinstance(m, types)}
