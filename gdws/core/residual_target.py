"""Refit targets that also absorb the error of a residual block's shortcut (data-aware GDWS, beyond the paper).

In a residual block a conv's output meets the shortcut: out = a * conv(h) + b + v, with a, b the per-channel scale
and shift of an eval-mode BatchNorm between them (a = 1, b = 0 without one) and v the shortcut value, computed from
the block's input. The plain refit fits the converted conv to the original conv's output y, so the block's output
still carries the shortcut's error v - v_hat (the error that reached the block's input through the converted layers
before it). With the target

    y + (v - v_hat) / a

instead, the refit's least squares gives the block's output error itself, a^2-weighted per channel; and since the
refit is one independent least-squares problem per output channel, a per-channel weight changes nothing: each
block then corrects the residual stream as far as its conv can, instead of passing the error on.

`shortcut_of` finds the pattern in a torch.fx graph: conv -> [BatchNorm2d] -> add(., v), v computable from the
values live at the conv's cut without the conv's output and without another converted layer. Anything else (no
add, a broadcast add, v depending on the conv) gives None: the plain target.
"""
from __future__ import annotations

import operator

import torch
from torch import Tensor, fx, nn

_ADDS = {("call_function", operator.add), ("call_function", operator.iadd), ("call_function", torch.add),
         ("call_method", "add"), ("call_method", "add_")}


def _main_path(conv: fx.Node, modules: dict[str, nn.Module]) -> tuple[fx.Node, str | None] | None:
    """(the node the conv's output reaches the add through, the BatchNorm's name or None), or None."""
    node, bn = conv, None
    if len(node.users) != 1:
        return None
    user = next(iter(node.users))
    module = modules.get(str(user.target)) if user.op == "call_module" else None
    if isinstance(module, nn.BatchNorm2d):
        if module.running_var is None:  # normalised by each batch's own statistics: not a fixed scale
            return None
        node, bn = user, str(user.target)
        if len(node.users) != 1:
            return None
    return node, bn


def shortcut_of(conv: fx.Node, live_in: list[fx.Node], pos: dict[fx.Node, int], modules: dict[str, nn.Module],
                converted: set[str]) -> tuple[fx.Graph, str | None] | None:
    """(a graph computing the shortcut value v from ``live_in`` (the conv piece's arguments, in order), the name of
    the BatchNorm between the conv and the add or None) for the pattern of the module docstring; else None."""
    path = _main_path(conv, modules)
    if path is None:
        return None
    main, bn = path
    add = next(iter(main.users))
    args = list(add.args)
    if (add.op, add.target) not in _ADDS or add.kwargs or len(args) != 2 or main not in args \
            or not all(isinstance(a, fx.Node) for a in args) or args[0] is args[1]:
        return None
    other = args[1] if args[0] is main else args[0]
    inputs = set(live_in)
    needed, stack = set(), [other]
    while stack:  # the nodes v is made from, back to the values live at the cut
        node = stack.pop()
        if node in inputs or node in needed or node.op == "get_attr":
            continue
        if node.op != "call_function" and node.op != "call_method" and node.op != "call_module" \
                or pos[node] < pos[conv] or node is conv or node is main \
                or (node.op == "call_module" and str(node.target) in converted):
            return None  # made from the conv's output, another converted layer, or nothing computable here
        needed.add(node)
        stack.extend(n for n in node.all_input_nodes)
    graph, env = fx.Graph(), {}
    for n in live_in:
        env[n] = graph.placeholder(n.name)

    def arg(m: fx.Node) -> fx.Node:
        if m not in env:  # a parameter or buffer read on the way
            env[m] = graph.node_copy(m)
        return env[m]

    for node in sorted(needed, key=pos.__getitem__):
        env[node] = graph.node_copy(node, arg)
    graph.output(env[other])
    return graph, bn


def inverse_scale(bn: nn.BatchNorm2d | None, channels: int) -> Tensor:
    """1 / a per channel of an eval-mode BatchNorm (ones without one); 0 where a is 0 or not finite (no correction
    can pass through that channel)."""
    if bn is None:
        return torch.ones(channels)
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        inv = 1 / scale
    return torch.where(torch.isfinite(inv) & (scale != 0), inv, torch.zeros_like(inv)).detach()
