"""Fold an eval-mode BatchNorm2d that directly follows a conv (dense or GDWS) into that conv.

"Directly follows" is read from the traced data flow (torch.fx), not from module order: the conv's
output must feed only the BN, and both modules must be called exactly once. Models that fx cannot
trace are left unfolded (with a warning). Inference only: the BN's running statistics are baked in.
"""
from __future__ import annotations

import warnings
from collections import Counter

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from gdws.core.layer import GDWSConv2d
from gdws.fast.forms import Straightforward
from gdws.fast.forms_explicit import Zero
from gdws.fast.spec import GDWSSpec


class _LeafTracer(fx.Tracer):
    """fx tracer that keeps convs, GDWS layers and BNs as single call_module nodes."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (GDWSConv2d, nn.Conv2d, nn.BatchNorm2d)):
            return True
        return super().is_leaf_module(m, qualname)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, bn name) for every BatchNorm2d whose only input is a conv/GDWS layer used only by it."""
    try:
        graph = _LeafTracer().trace(model)
    except Exception as exc:  # fx cannot trace data-dependent control flow; folding is an optimisation only
        warnings.warn(f"BN folding skipped: torch.fx could not trace {type(model).__name__} ({exc})")
        return []
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        if modules[node.target].running_mean is None:  # uses batch statistics even in eval mode
            continue
        if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
            continue
        src = node.args[0]
        if src.op != "call_module" or not isinstance(modules[src.target], (nn.Conv2d, GDWSConv2d)):
            continue
        if len(src.users) == 1 and calls[src.target] == 1 and calls[node.target] == 1:
            pairs.append((src.target, node.target))
    return pairs


def _check_bn(bn: nn.BatchNorm2d, name: str) -> None:
    if bn.training:
        raise ValueError(f"BatchNorm {name!r} is in training mode: BN folding is for inference; call model.eval() first")


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv computing bn(conv(x)) for an eval-mode ``bn`` (``torch.nn.utils.fusion``; ``conv`` is kept)."""
    return fuse_conv_bn_eval(conv.eval(), bn).eval()


def fold_into(model: nn.Module, specs: dict[str, GDWSSpec]) -> list[tuple[str, str]]:
    """Fold every foldable BN of ``model`` in place; GDWS layers are folded into their entry of ``specs``.

    Dense convs are replaced by folded convs; each folded BN becomes nn.Identity. Returns the pairs folded.
    """
    pairs = conv_bn_pairs(model)
    for conv_name, bn_name in pairs:
        bn = model.get_submodule(bn_name)
        _check_bn(bn, bn_name)
        if conv_name in specs:
            specs[conv_name] = specs[conv_name].fold_batchnorm(bn)
        else:
            model.set_submodule(conv_name, fold_conv_bn(model.get_submodule(conv_name), bn))
        model.set_submodule(bn_name, nn.Identity())
    return pairs


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold, in place, every BN that directly follows a conv or GDWS layer of an eval-mode ``model``.

    Folded GDWS layers become plain straightforward-form modules (gdws.fast.forms.Straightforward).
    """
    specs = {n: GDWSSpec.from_layer(m) for n, m in model.named_modules() if isinstance(m, GDWSConv2d)}
    for conv_name, _ in fold_into(model, specs):
        if conv_name in specs:
            spec = specs[conv_name]
            model.set_submodule(conv_name, Straightforward(spec) if spec.G > 0 else Zero(spec))
    return model
