"""The two batch sources behind every DataModule.

- :class:`ResidentLoader`: the whole split lives on the training device as uint8; each batch is gathered
  by index and augmented there in one vectorised call (cifar10-airbench style). No worker processes,
  no host-to-device copies per step.
- :class:`ImageTensorDataset`: a plain map-style Dataset for ``torch.utils.data.DataLoader`` with the
  same augmentation function applied per image.

Both yield ``(x float32 [B, C, H, W] in [0, 1], y int64 [B])``.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset

from gdws.data.augment import random_crop_flip, to_float


class ShardedShuffle:
    """Seeded per-epoch order of ``n`` indices, split between DDP ranks like ``DistributedSampler``.

    Every rank draws the same permutation (same seed and epoch), pads it by wrapping around to a multiple
    of ``world_size`` (so all ranks run the same number of steps, which DDP requires) and keeps every
    ``world_size``-th index starting at ``rank``. Lightning calls :meth:`set_epoch` at each epoch start,
    also after resuming, so the order of a resumed epoch equals that of an uninterrupted run.
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size), got rank={rank}, world_size={world_size}")
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (called by Lightning's loops)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)

    def indices(self) -> torch.Tensor:
        """This rank's indices for the current epoch (CPU LongTensor of length ``len(self)``)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        total = len(self) * self.world_size
        if total > self.n:  # wrap around so every rank gets the same count
            order = order.repeat(math.ceil(total / self.n))[:total]
        return order[self.rank::self.world_size]


class ResidentLoader:
    """Iterate over index batches of device-resident uint8 images, augmenting on the device.

    Args:
        images: ``[N, C, H, W]`` uint8 (or float in [0, 1]) tensor, already on the target device.
        labels: ``[N]`` int64 tensor on the same device.
        batch_size: images per batch.
        sampler: the index order (shuffling, epoch, DDP shard).
        augment: apply random crop (padding 4) + flip.
        drop_last: drop the final incomplete batch.
    """

    # DataLoader-like attributes that Lightning inspects (it calls ``sampler.set_epoch`` each epoch).
    batch_sampler = None

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, sampler: ShardedShuffle,
                 augment: bool, drop_last: bool = False) -> None:
        if images.shape[0] != labels.shape[0] or images.shape[0] != sampler.n:
            raise ValueError("images, labels and sampler must describe the same number of examples")
        self.images, self.labels = images, labels
        self.batch_size, self.sampler = batch_size, sampler
        self.augment, self.drop_last = augment, drop_last

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dev = self.images.device
        idx = self.sampler.indices().to(dev)
        gen = None
        if self.augment:
            # A fresh generator per (seed, epoch, rank): reproducible, resumable, different on each rank.
            s = self.sampler
            gen = torch.Generator(device=dev).manual_seed(s.seed * 1_000_003 + s.epoch * 7919 + s.rank + 1)
        for b in range(len(self)):
            i = idx[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.images.index_select(0, i)
            if self.augment:
                x = random_crop_flip(x, generator=gen)
            yield to_float(x), self.labels.index_select(0, i)


class ImageTensorDataset(Dataset):
    """Map-style dataset over CPU uint8 images for the DataLoader path (same augmentation, per image)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: bool) -> None:
        self.images, self.labels, self.augment = images, labels, augment

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i]
        if self.augment:
            x = random_crop_flip(x[None])[0]
        return to_float(x), self.labels[i]
