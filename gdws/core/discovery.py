"""Find a model's convs, their execution order and output sizes (one forward pass), and the skip rules.

Shared by `convert` (which layers to convert, MACs) and `compute_alphas` (which layers need alphas).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn


@dataclass
class LayerTrace:
    """What one forward pass saw of a Conv2d or Linear module."""

    name: str
    module: nn.Module
    order: int | None = None  # index of its first call among traced modules, None if never called
    output_hws: list[tuple[int, int]] = field(default_factory=list)  # one entry per call (Linear: rows per sample)

    @property
    def called(self) -> bool:
        return self.order is not None

    def dense_macs(self) -> int:
        """MACs per sample of the module as it is (Conv2d: M*C/groups*kh*kw*H'W'; Linear: in*out per row)."""
        m = self.module
        if isinstance(m, nn.Linear):
            per = m.in_features * m.out_features
        else:
            kh, kw = m.kernel_size
            per = m.out_channels * (m.in_channels // m.groups) * kh * kw
        return sum(per * h * w for h, w in self.output_hws)

    def pixels(self) -> int:
        """Sum over calls of H' * W'."""
        return sum(h * w for h, w in self.output_hws)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter or buffer (CPU/float32 if none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def default_example_input(model: nn.Module, input_size: Sequence[int]) -> Tensor:
    """Zeros of shape (1, *input_size) on the model's device and dtype."""
    device, dtype = model_device_dtype(model)
    return torch.zeros(1, *input_size, device=device, dtype=dtype)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; restore each one's own training flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def trace_layers(model: nn.Module, example_input: Tensor) -> dict[str, LayerTrace]:
    """One eval-mode, no-grad forward pass with hooks on every nn.Conv2d and nn.Linear; restores the mode.

    Returns {module name: LayerTrace} in `named_modules` order.
    """
    traces = {name: LayerTrace(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    batch = example_input.shape[0]
    counter = [0]

    def hook(trace: LayerTrace):
        def fn(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if trace.order is None:
                trace.order = counter[0]
                counter[0] += 1
            if isinstance(module, nn.Linear):
                trace.output_hws.append((output.numel() // (batch * module.out_features), 1))
            else:
                trace.output_hws.append((output.shape[-2], output.shape[-1]))
        return fn

    handles = [t.module.register_forward_hook(hook(t)) for t in traces.values()]
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return traces


def _matches(name: str, patterns: Sequence[str] | None) -> bool:
    return any(fnmatch(name, p) for p in (patterns or ()))


def skip_reasons(traces: dict[str, LayerTrace], include: Sequence[str] | None = None,
                 exclude: Sequence[str] | None = None, skip_first: bool = True) -> dict[str, str]:
    """Default GDWS skip rules for every Conv2d: {name: reason}, reason '' for a conversion candidate.

    Reasons, in priority order: 'excluded' (matches an `exclude` fnmatch pattern), 'grouped/depthwise' (groups > 1),
    'custom Conv2d forward' (a subclass that overrides forward), 'not used in forward', 'first conv' (first conv
    executed, if skip_first), '1x1'. A name matching an `include` pattern overrides the last two (it is converted
    even if it is the first conv or 1x1).
    """
    convs = {n: t for n, t in traces.items() if isinstance(t.module, nn.Conv2d)}
    called = [t for t in convs.values() if t.called]
    first = min(called, key=lambda t: t.order).name if called else None
    reasons = {}
    for name, t in convs.items():
        forced = _matches(name, include)
        if _matches(name, exclude):
            reasons[name] = "excluded"
        elif t.module.groups != 1:
            reasons[name] = "grouped/depthwise"
        elif type(t.module).forward is not nn.Conv2d.forward:
            # e.g. weight standardisation: the layer does not compute conv(x, weight), so What would be wrong
            reasons[name] = "custom Conv2d forward"
        elif not t.called:
            reasons[name] = "not used in forward"
        elif skip_first and name == first and not forced:
            reasons[name] = "first conv"
        elif tuple(t.module.kernel_size) == (1, 1) and not forced:
            reasons[name] = "1x1"
        else:
            reasons[name] = ""
    return reasons
