"""Multiply-accumulates per image, counted from the executed graph with torch.utils.flop_counter."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from gdws.core.discovery import model_device_dtype

# Only the operators of nn.Conv2d and nn.Linear count (paper: conv + FC MACs); BN, ReLU, pooling,
# index_select and additions are ignored. Backward ops never run here (no_grad).
_COUNTED_OPS = ("convolution", "_convolution", "conv2d", "mm", "addmm", "bmm", "linear")


def _counted(op: object) -> bool:
    """True for the aten overloads of convolutions and matrix products."""
    return str(op).removeprefix("aten.").split(".")[0] in _COUNTED_OPS


@torch.no_grad()
def count_macs(model: nn.Module, input_size: Sequence[int] = (3, 32, 32)) -> int:
    """MACs of one forward pass of ``model`` on a single image of shape ``input_size`` (C, H, W).

    FlopCounterMode reports 2 FLOPs per multiply-accumulate, so MACs = FLOPs / 2. A GDWS layer
    therefore counts (K*K + M) * G * H' * W' (depthwise conv with groups=G plus the 1x1 conv) and a dense
    conv M * C * K * K * H' * W'. The model is run in eval mode on its own device and restored afterwards.
    """
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (C, H, W), e.g. (3, 32, 32); got {tuple(input_size)}")
    device, dtype = model_device_dtype(model)
    x = torch.zeros(1, *input_size, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    flops = sum(n for op, n in counter.get_flop_counts()["Global"].items() if _counted(op))
    return int(flops) // 2
