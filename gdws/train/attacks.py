"""The model as a training-time attack sees it: an AMP-aware view, and the autocast dtype per device.

Each recipe (``gdws.train.module``) builds its torchattacks attack (PGD, TPGD, FFGSM) on this view;
torchattacks puts the model in eval mode while it attacks and restores the mode afterwards.
"""
from __future__ import annotations

import torch
import torch.nn as nn

# fp16 backward through a network can underflow to zero input gradients; scaling the logits' gradient
# by a power of two is exact and leaves the sign (all that the sign-step attacks use) unchanged.
FP16_GRAD_SCALE = 2.0 ** 12


def amp_dtype(device: torch.device) -> torch.dtype:
    """Autocast dtype for ``device``: bfloat16 on CPU and on CUDA GPUs that support it, else float16."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16 if device.type in ("cpu", "cuda") else torch.float16


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``scale`` on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad * ctx.scale, None


class AttackView(nn.Module):
    """The model as an attack sees it: optional autocast forward returning float32 logits.

    Args:
        model: the network (its train/eval mode is switched by the attack through this wrapper).
        dtype: autocast dtype, or None for full precision.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in float32 (gradient scaled under float16 so input gradients keep their sign)."""
        if self.dtype is None:
            return self.model(x)
        with torch.autocast(x.device.type, dtype=self.dtype):
            logits = self.model(x)
        logits = logits.float()
        return _ScaleGrad.apply(logits, FP16_GRAD_SCALE) if self.dtype == torch.float16 else logits

