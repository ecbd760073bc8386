"""Shared LightningDataModule logic: splits, subsets, the resident and DataLoader paths, train_images.

Subclasses only say how to read a split from disk (:meth:`ImageDataModule.load_split`) and how to
download it (:meth:`ImageDataModule.download_data`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from gdws.data.augment import random_crop_flip, to_float
from gdws.data.loaders import ImageTensorDataset, ResidentLoader, ShardedShuffle
from gdws.errors import BadValue, CannotRun


@dataclass
class Split:
    """One split in memory: uint8 images ``[N, C, H, W]``, int64 labels ``[N]``, optional bool ``exact_mask``."""

    images: torch.Tensor
    labels: torch.Tensor
    exact_mask: torch.Tensor | None = None

    def take(self, index: torch.Tensor | slice) -> "Split":
        """The sub-split at ``index``."""
        mask = None if self.exact_mask is None else self.exact_mask[index]
        return Split(self.images[index], self.labels[index], mask)


def _positive_or_none(name: str, value: int | None) -> int | None:
    if value is not None and int(value) <= 0:
        raise BadValue(f"data.{name} must be a positive integer or null (all), got {value}")
    return None if value is None else int(value)


class ImageDataModule(pl.LightningDataModule):
    """Base DataModule for 32x32 image classification with a held-out validation split.

    Args:
        root: folder holding the dataset's standard files.
        download: fetch the official files (checksum-verified) in :meth:`prepare_data` when missing.
        batch_size / eval_batch_size: training / evaluation batch sizes (per process under DDP).
        train_subset: keep only the first N training images (after the validation split is removed;
            all of them when fewer remain).
        val_size: number of images taken from the END of the training set for checkpoint selection.
        eval_subset: keep only the first N test images (after ``exact_only``; all when fewer).
        exact_only: evaluate only images flagged by the files' ``exact_mask`` key.
        resident: keep splits on the training device and augment there; else use a torch DataLoader.
        num_workers: DataLoader workers (DataLoader path only).
        seed: seeds shuffling and augmentation.
        num_classes: number of classes (also read by config interpolation).
        normalize: name of the model-side normalisation (only carried for config interpolation).

    Attribute ``device`` (default None = CPU) places the resident tensors when no Trainer is attached,
    e.g. ``dm.device = "cuda"`` before ``dm.test_dataloader()`` for a GPU evaluation.
    """

    dataset_name = "images"

    def __init__(self, root: str = "./data", download: bool = False, batch_size: int = 128,
                 eval_batch_size: int = 256, train_subset: int | None = None, val_size: int = 1000,
                 eval_subset: int | None = None, exact_only: bool = False, resident: bool = True,
                 num_workers: int = 0, seed: int = 0, num_classes: int = 10, normalize: str | None = None) -> None:
        super().__init__()
        if int(batch_size) <= 0 or int(eval_batch_size) <= 0:
            raise BadValue(f"data.batch_size and data.eval_batch_size must be positive, got {batch_size}, {eval_batch_size}")
        if int(val_size) < 0:
            raise BadValue(f"data.val_size must be >= 0 (0 disables validation), got {val_size}")
        self.root, self.download = str(root), bool(download)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.train_subset = _positive_or_none("train_subset", train_subset)
        self.eval_subset = _positive_or_none("eval_subset", eval_subset)
        self.val_size, self.exact_only = int(val_size), bool(exact_only)
        self.resident, self.num_workers, self.seed = bool(resident), int(num_workers), int(seed)
        self.num_classes, self.normalize = int(num_classes), normalize
        # Device of the resident tensors when no Trainer is attached (a Trainer's root device wins).
        self.device: torch.device | None = None
        self.splits: dict[str, Split] = {}
        self._on_device: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    # ---- subclass hooks -------------------------------------------------------------------------
    def load_split(self, train: bool) -> Split:
        """Read the training (``train=True``) or test split; raise one clear error when unreadable."""
        raise NotImplementedError

    def download_data(self) -> None:
        """Fetch the official files into ``self.root`` when they are missing (checksum-verified)."""
        raise NotImplementedError

    # ---- Lightning hooks ------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download when asked to (called on one process only under DDP)."""
        if self.download:
            self.download_data()

    def setup(self, stage: str | None = None) -> None:
        """Load both splits once and cut them into train / val / test as configured."""
        if self.splits:
            return
        full, test = self.load_split(True), self.load_split(False)
        n = full.labels.shape[0]
        if self.val_size >= n:
            raise BadValue(f"data.val_size={self.val_size} leaves no training images (the training set has {n})")
        train = full.take(slice(0, n - self.val_size))
        if self.train_subset is not None:
            train = train.take(slice(0, self.train_subset))
        if self.exact_only:
            if test.exact_mask is None:
                raise CannotRun(f"data.exact_only=true but the {self.dataset_name} files under {self.root} carry no "
                                "'exact_mask' key (only the rebuilt CIFAR-10 has one); set data.exact_only=false")
            test = test.take(test.exact_mask)
        if self.eval_subset is not None:
            test = test.take(slice(0, self.eval_subset))
        self.splits = {"train": train, "val": full.take(slice(n - self.val_size, n)), "test": test}

    def train_dataloader(self) -> ResidentLoader | DataLoader:
        """Shuffled, augmented training batches (this rank's shard under DDP)."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> ResidentLoader | DataLoader | list:
        """Held-out batches for checkpoint selection ([] when ``val_size`` is 0: validation is skipped)."""
        return self._loader("val", train=False) if self.val_size > 0 else []

    def test_dataloader(self) -> ResidentLoader | DataLoader:
        """Test batches in file order (after ``exact_only`` and ``eval_subset``)."""
        return self._loader("test", train=False)

    # ---- public helpers -------------------------------------------------------------------------
    def train_images(self, n: int, seed: int = 0, augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` training images drawn without replacement with ``seed`` (float32 in [0, 1], CPU) and labels."""
        self.setup("fit")
        train = self.splits["train"]
        if not 0 < n <= train.labels.shape[0]:
            raise ValueError(f"train_images: n must be in [1, {train.labels.shape[0]}], got {n}")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(train.labels.shape[0], generator=g)[:n]
        x = train.images[idx]
        if augment:
            x = random_crop_flip(x, generator=g)
        return to_float(x), train.labels[idx]

    # ---- internals ------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.strategy.root_device
        return torch.device(self.device) if self.device is not None else torch.device("cpu")

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _fits(self, split: Split, device: torch.device) -> bool:
        """True when the split's uint8 tensor (plus room for batches) fits in the device's free memory."""
        if device.type != "cuda":
            return True
        free, _ = torch.cuda.mem_get_info(device)
        return split.images.numel() * 2 < free

    def _loader(self, name: str, train: bool) -> ResidentLoader | DataLoader:
        if not self.splits:
            self.setup("fit")
        split = self.splits[name]
        bs = self.batch_size if train else self.eval_batch_size
        # Train/val are sharded across DDP ranks inside trainer.fit; the test split is always whole, because
        # evaluation (gdws.eval) iterates it outside the Trainer, also after a DDP fit.
        rank, world = self._rank() if name != "test" else (0, 1)
        n_rank = -(-split.labels.shape[0] // world)
        # Drop a final partial training batch (BatchNorm fails on a batch of one) unless it is the only one.
        drop_last = train and n_rank >= bs
        device = self._device()
        if self.resident and self._fits(split, device):
            key = (name, str(device))
            if key not in self._on_device:
                self._on_device[key] = (split.images.to(device), split.labels.to(device))
            x, y = self._on_device[key]
            sampler = ShardedShuffle(len(y), shuffle=train, seed=self.seed, rank=rank, world_size=world)
            return ResidentLoader(x, y, bs, sampler, augment=train, drop_last=drop_last)
        if self.resident:
            warnings.warn(f"{self.dataset_name} {name} split does not fit on {device}; using the DataLoader path")
        ds = ImageTensorDataset(split.images, split.labels, augment=train)
        return DataLoader(ds, batch_size=bs, shuffle=train, drop_last=drop_last, num_workers=self.num_workers,
                          generator=torch.Generator().manual_seed(self.seed) if train else None,
                          pin_memory=device.type == "cuda", persistent_workers=self.num_workers > 0)
