"""Per-dataset input normalisation that lives inside the model.

Every model in the zoo takes images in [0, 1] and normalises them itself, so adversarial attacks
(which clip to [0, 1] and measure eps in pixel space) can treat the model as a black box.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

#: Channel means / standard deviations of the training sets (RGB, images scaled to [0, 1]). "imagenet" is there
#: because many published CIFAR checkpoints (e.g. the common CIFAR ResNet-20..110 ones) were trained with it.
DATASET_STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

NormalizeSpec = Union[str, None, tuple[Sequence[float], Sequence[float]], list]


def resolve_stats(spec: NormalizeSpec) -> tuple[list[float], list[float]] | None:
    """Turn a normalisation spec into ``(mean, std)`` lists, or ``None`` for no normalisation.

    ``spec`` is a dataset name from :data:`DATASET_STATS`, ``None`` / ``"none"``, or a pair
    ``(mean, std)`` of 3-element sequences with positive std.
    """
    if spec is None or (isinstance(spec, str) and spec.lower() in ("none", "null", "")):
        return None
    if isinstance(spec, str):
        key = spec.lower()
        if key not in DATASET_STATS:
            raise ValueError(
                f"unknown normalize={spec!r}; pass one of {sorted(DATASET_STATS)}, None, or (mean, std)"
            )
        mean, std = DATASET_STATS[key]
        return list(mean), list(std)
    try:
        mean, std = spec  # type: ignore[misc]
        mean, std = [float(m) for m in mean], [float(s) for s in std]
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"normalize={spec!r} is not understood; pass a dataset name {sorted(DATASET_STATS)}, "
            "None, or a pair (mean, std) of 3 floats each"
        ) from exc
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"normalize=(mean, std) needs 3 means and 3 positive stds, got {spec!r}")
    return mean, std


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; identity when built with ``spec=None``.

    mean/std are *non-persistent* buffers: they move with ``.to(device)`` but are not part of the
    state_dict. That keeps parameter counts and checkpoint keys identical to the plain
    architecture, so third-party checkpoints (saved without normalisation buffers) load strictly.
    The statistics therefore come from the model config, never from a checkpoint.
    """

    def __init__(self, spec: NormalizeSpec = "cifar10") -> None:
        super().__init__()
        stats = resolve_stats(spec)
        self.enabled = stats is not None
        mean, std = stats if stats is not None else ([0.0] * 3, [1.0] * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a batch ``[B, 3, H, W]`` of images in [0, 1]."""
        if not self.enabled:
            return x
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        if not self.enabled:
            return "identity"
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
