"""Test helper: BatchNorm statistics that make every layer matter (not the identity of a fresh network)."""
from __future__ import annotations

from torch import nn


def randomize_bn(model: nn.Module, mean: float, var: tuple[float, float]) -> nn.Module:
    """Draw every BatchNorm2d's running mean from U(-mean, mean) and running var from U(*var); returns ``model``."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-mean, mean)
            m.running_var.uniform_(*var)
    return model
