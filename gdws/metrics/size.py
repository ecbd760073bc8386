"""Model size in MiB, as the paper reports it ("MB" = trainable parameters x 4 bytes / 2^20)."""
from __future__ import annotations

import torch
from torch import nn

BYTES_PER_PARAM = 4  # the paper counts every parameter as float32


def count_params(model: nn.Module, nonzero: bool = False) -> int:
    """Number of parameters of ``model`` (non-zero entries only when ``nonzero``).

    Parameters are the ``nn.Parameter`` tensors (weights, biases, BN gamma/beta); buffers such as BN
    running statistics or the GDWS ``g``/``index`` vectors are not counted. ``requires_grad`` is ignored
    on purpose: evaluation code freezes models, which must not change their size.
    """
    total = 0
    for p in model.parameters():
        total += int(torch.count_nonzero(p.detach())) if nonzero else p.numel()
    return total


def size_mb(model: nn.Module, nonzero: bool = False) -> float:
    """Model size in MiB: ``count_params(model, nonzero) * 4 / 2**20``.

    Use ``nonzero=True`` for unstructured-pruned models, whose zeros would not be stored (paper, table "hydra").
    """
    return count_params(model, nonzero=nonzero) * BYTES_PER_PARAM / 2**20
