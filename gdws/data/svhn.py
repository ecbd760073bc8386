"""SVHN (cropped digits) from the standard ``train_32x32.mat`` / ``test_32x32.mat`` files under ``root``."""
from __future__ import annotations

import os

import numpy as np
import torch

from gdws.data.base import ImageDataModule, Split
from gdws.errors import CannotRun, MissingInput

FILES = {
    True: ("train_32x32.mat", "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
           "e26dedcc434d2e4c54c9b2d4a06d8373"),
    False: ("test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
            "eb5a983be6a315427106f1b164d9cef3"),
}


def _error(path: str, problem: str) -> MissingInput | CannotRun:
    msg = (f"SVHN {problem} at {os.path.abspath(path)}. Ways out: pass data.download=true to fetch the official "
           f".mat files; or set data.root (or the GDWS_DATA environment variable) to a folder containing "
           f"train_32x32.mat and test_32x32.mat.")
    return MissingInput(msg) if "missing" in problem else CannotRun(msg)


def read_svhn(root: str, train: bool) -> Split:
    """Read one SVHN split: uint8 images ``[N, 3, 32, 32]`` and int64 labels with the digit 0 as 0 (files use 10)."""
    from scipy.io import loadmat  # imported lazily: only SVHN needs scipy
    from scipy.io.matlab import MatReadError

    path = os.path.join(root, FILES[train][0])
    if not os.path.isfile(path):
        raise _error(path, "file is missing")
    try:
        mat = loadmat(path)
        x, y = mat["X"], mat["y"]
    except (MatReadError, ValueError, TypeError, KeyError, OSError, NotImplementedError) as err:  # unreadable .mat
        raise _error(path, f"file is corrupt ({type(err).__name__}: {err})") from err
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise _error(path, f"file has unexpected arrays (X {x.shape} {x.dtype}, y {y.shape})")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))  # [H, W, C, N] -> [N, C, H, W]
    labels = torch.as_tensor(y.reshape(-1).astype(np.int64))
    labels[labels == 10] = 0
    if labels.min() < 0 or labels.max() > 9:
        raise _error(path, "file has labels outside 0..10")
    return Split(images, labels, None)


class SVHNDataModule(ImageDataModule):
    """SVHN DataModule (see :class:`gdws.data.base.ImageDataModule` for the options)."""

    dataset_name = "SVHN"

    def load_split(self, train: bool) -> Split:
        """Read one split from ``root``."""
        return read_svhn(self.root, train)

    def download_data(self) -> None:
        """Download the missing .mat files (md5-verified by torchvision)."""
        from torchvision.datasets.utils import download_url

        for name, url, md5 in FILES.values():
            if not os.path.isfile(os.path.join(self.root, name)):
                download_url(url, self.root, filename=name, md5=md5)
