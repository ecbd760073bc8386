"""Seeded random images for tests: each class has its own mean colour, so a tiny model can learn it."""
from __future__ import annotations

import torch

from gdws.data.base import ImageDataModule, Split


class SyntheticDataModule(ImageDataModule):
    """Random 32x32 uint8 images whose colour depends on the class (tests only).

    Takes every option of :class:`gdws.data.base.ImageDataModule` (``root`` and ``download`` are accepted so
    that all data configs share one set of keys, and ignored) plus the split sizes. Every fourth test image
    is flagged in ``exact_mask`` so ``exact_only`` can be exercised.

    Args:
        num_train: training-set size (the validation split is taken from its end).
        num_test: test-set size.
        **kwargs: the base options.
    """

    dataset_name = "synthetic"

    def __init__(self, num_train: int = 512, num_test: int = 256, **kwargs) -> None:
        super().__init__(**kwargs)
        if int(num_train) <= 0 or int(num_test) <= 0:
            raise ValueError(f"num_train and num_test must be positive, got {num_train}, {num_test}")
        self.num_train, self.num_test = int(num_train), int(num_test)

    def load_split(self, train: bool) -> Split:
        """Generate one split from ``seed`` (train and test differ, class colours are shared)."""
        colours = torch.rand(self.num_classes, 3, 1, 1, generator=torch.Generator().manual_seed(self.seed)) * 0.6 + 0.2
        g = torch.Generator().manual_seed(self.seed * 2 + (1 if train else 2))
        n = self.num_train if train else self.num_test
        labels = torch.randint(0, self.num_classes, (n,), generator=g)
        noise = torch.rand(n, 3, 32, 32, generator=g) - 0.5
        images = ((colours[labels] + 0.4 * noise).clamp(0, 1) * 255).round().to(torch.uint8)
        return Split(images, labels, torch.arange(n) % 4 == 0)

    def download_data(self) -> None:
        """Nothing to download."""
