"""Structured (filter) pruning through torch-pruning's dependency graph: which convs may lose output channels,
the filter projection, the masks that zero a channel everywhere it lives, and its physical removal.

A conv's output channel lives in a *group*: the conv's filter (and bias), the BatchNorm entries that follow it,
and the matching input slices of the layers that read it. Zeroing the whole group makes the network compute
exactly what it computes once the group is physically removed, so masked training and removal agree.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch_pruning as tp
from torch import Tensor, nn

from gdws.core.discovery import eval_mode

# The layers whose parameter slices group_masks knows how to zero (the layers of every model in the zoo).
_PARAM_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


def dependency_graph(model: nn.Module, input_size: Sequence[int] = (3, 32, 32)) -> tp.DependencyGraph:
    """torch-pruning's dependency graph of ``model``, traced with one random input of ``input_size``.

    The trace runs in eval mode (restored afterwards) so that it leaves the BatchNorm statistics untouched.
    """
    device = next(model.parameters()).device
    example = torch.rand(1, *input_size, device=device)
    with eval_mode(model):
        return tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels == module.out_channels


def prunable_convs(model: nn.Module, graph: tp.DependencyGraph) -> list[str]:
    """Names of the convs whose output channels can be removed on their own, in registration order.

    A conv qualifies when no other conv or linear layer produces the same channels: in ResNets the convs
    feeding a residual addition share their channels with the skip path (the residual width), so only the
    block-internal convs qualify; in VGG every conv does. Depthwise convs follow their input and are skipped.
    """
    names = []
    for name, conv in model.named_modules():
        if not isinstance(conv, nn.Conv2d) or _is_depthwise(conv) or conv.out_channels < 2:
            continue
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=[0])
        coupled = any(
            isinstance(dep.target.module, (nn.Conv2d, nn.Linear)) and dep.target.module is not conv
            and not _is_depthwise(dep.target.module) and graph.is_out_channel_pruning_fn(dep.handler)
            for dep, _ in group
        )
        if not coupled:
            names.append(name)
    return names


def pruned_filters(weight: Tensor, ratio: float) -> list[int]:
    """Indices of the ``round(ratio * M)`` output filters of ``weight`` [M, ...] with the smallest L2 norm
    (at least one filter is always kept). Ties go to the lower index, so the choice is reproducible."""
    m = weight.shape[0]
    n = min(int(round(ratio * m)), m - 1)
    norms = weight.detach().reshape(m, -1).norm(dim=1).cpu()
    return sorted(torch.argsort(norms, stable=True)[:n].tolist())


def filter_projection(weight: Tensor, ratio: float) -> Tensor:
    """ADMM's Euclidean projection onto "at most (1 - ratio) * M non-zero filters": ``weight`` with its
    smallest-norm filters set to zero."""
    out = weight.detach().clone()
    out[pruned_filters(weight, ratio)] = 0
    return out


def _plain(idxs) -> list[int]:
    # torch-pruning hands out (idx, root_idx) pairs inside groups; the layer's own index is the first.
    return [int(getattr(i, "idx", i)) for i in idxs]


def group_masks(model: nn.Module, graph: tp.DependencyGraph, plan: dict[str, list[int]]) -> dict[str, Tensor]:
    """0/1 masks ``{parameter name: mask}`` that zero every parameter slice of the channels in ``plan``
    ({conv name: output channels}): filters, biases, BatchNorm affine entries and the readers' input slices."""
    modules = dict(model.named_modules())
    names = {m: n for n, m in modules.items()}
    masks: dict[str, Tensor] = {}

    def zero(module: nn.Module, param: str, index: tuple) -> None:
        p = getattr(module, param, None)
        if p is None:
            return
        key = f"{names[module]}.{param}" if names[module] else param
        mask = masks.setdefault(key, torch.ones_like(p))
        mask[index] = 0

    for conv_name, channels in plan.items():
        if not channels:
            continue
        group = graph.get_pruning_group(modules[conv_name], tp.prune_conv_out_channels, idxs=list(channels))
        for dep, idxs in group:
            layer, idx = dep.target.module, _plain(idxs)
            if not isinstance(layer, nn.Module) or not any(True for _ in layer.parameters(recurse=False)):
                continue  # functional nodes (ReLU, pooling, add, flatten) hold no weights
            if not isinstance(layer, _PARAM_LAYERS):
                raise NotImplementedError(f"channel pruning does not handle {type(layer).__name__} "
                                          f"({names.get(layer)}); supported: Conv2d, Linear, BatchNorm2d")
            outputs = graph.is_out_channel_pruning_fn(dep.handler) or _is_depthwise(layer) or isinstance(layer, nn.BatchNorm2d)
            zero(layer, "weight", (idx,) if outputs else (slice(None), idx))
            if outputs:
                zero(layer, "bias", (idx,))
    return masks


def remove_channels(model: nn.Module, plan: dict[str, list[int]], input_size: Sequence[int] = (3, 32, 32)) -> nn.Module:
    """Physically remove the output channels in ``plan`` ({conv name: channels}) from ``model`` (in place), with
    everything in their groups (BatchNorm entries, the next layers' input slices). Returns ``model``."""
    graph = dependency_graph(model, input_size)
    modules = dict(model.named_modules())
    for conv_name, channels in plan.items():
        if channels:
            graph.get_pruning_group(modules[conv_name], tp.prune_conv_out_channels, idxs=list(channels)).prune()
    return model
