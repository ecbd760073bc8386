"""Batched CIFAR-style augmentation (random crop with zero padding + horizontal flip) on any device.

One function serves both data paths: the device-resident loader calls it on whole batches, the
DataLoader path calls it on single images, so both have exactly the same semantics.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, padding: int = 4, flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly crop each image of ``x`` from a zero-padded copy and flip it horizontally with p = 0.5.

    Args:
        x: images ``[B, C, H, W]`` of any dtype (uint8 or float) on any device.
        padding: zero padding on every side; offsets are drawn uniformly from ``0 .. 2 * padding``.
        flip: whether to apply the random horizontal flip.
        generator: optional generator on ``x.device`` for reproducible draws.

    Returns:
        Augmented images with the shape, dtype and device of ``x``. Each output image equals its input
        shifted by ``(offset - padding)`` pixels, with zeros where the shift uncovers the border.
    """
    if x.dim() != 4:
        raise ValueError(f"random_crop_flip expects a batch [B, C, H, W], got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    dev = x.device
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))  # one padded tensor for the batch
        dy = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, :, None]  # [B, H, 1]
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, :]  # [B, 1, W]
        batch = torch.arange(b, device=dev)[:, None, None]
        # Advanced indices around a slice put the indexed dims first: result is [B, H, W, C].
        x = padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()
    if flip:
        mask = torch.rand(b, device=dev, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Convert uint8 images to float32 in [0, 1] (float inputs are returned as float32 unchanged)."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()
