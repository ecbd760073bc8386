"""CIFAR-10 from the standard ``cifar-10-batches-py`` pickle files (official or rebuilt with ``exact_mask``).

The files are read here rather than through torchvision's CIFAR10 class, which md5-checks each batch
file and so refuses the rebuilt copy (same format, different pixels for the JPEG-decoded images).
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from gdws.data.base import ImageDataModule, Split
from gdws.errors import CannotRun, MissingInput

FOLDER = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]


def has_cifar10(root: str | os.PathLike) -> bool:
    """True when ``root/cifar-10-batches-py`` holds every training and test batch file."""
    folder = os.path.join(root, FOLDER)
    return all(os.path.isfile(os.path.join(folder, n)) for n in TRAIN_FILES + TEST_FILES)


def data_error(root: str, problem: str) -> MissingInput | CannotRun:
    """The one error for missing or unreadable CIFAR-10, naming the path and the ways out."""
    folder = os.path.join(root, FOLDER)
    msg = (f"CIFAR-10 {problem} at {os.path.abspath(folder)}. Ways out: pass data.download=true to fetch the "
           f"official archive; set data.root (or the GDWS_DATA environment variable) to a folder containing "
           f"{FOLDER}/; or build it offline with `python ../shared/data/cifar10/build.py DIR`.")
    return MissingInput(msg) if "missing" in problem else CannotRun(msg)


def _read_batch(path: str, root: str) -> dict:
    try:
        with open(path, "rb") as f:
            # latin1 decodes the official (Python 2) pickles' str keys and numpy payload; rebuilt files too.
            batch = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, OSError) as err:
        raise data_error(root, f"file {os.path.basename(path)} is corrupt ({type(err).__name__}: {err})") from err
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 \
            or labels is None or len(labels) != data.shape[0]:
        raise data_error(root, f"file {os.path.basename(path)} is not a CIFAR-10 batch (bad 'data'/'labels')")
    return batch


def read_cifar10(root: str, train: bool) -> Split:
    """Read the training (5 batches) or test split under ``root/cifar-10-batches-py``.

    Returns uint8 images ``[N, 3, 32, 32]``, int64 labels and the concatenated ``exact_mask`` when every
    batch file has one (None otherwise). Raises FileNotFoundError / RuntimeError with the ways out.
    """
    names = TRAIN_FILES if train else TEST_FILES
    folder = os.path.join(root, FOLDER)
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise data_error(root, f"is missing ({', '.join(missing)} not found)")
    batches = [_read_batch(os.path.join(folder, n), root) for n in names]
    images = torch.from_numpy(np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32))
    labels = torch.as_tensor(np.concatenate([np.asarray(b["labels"]) for b in batches]), dtype=torch.int64)
    if labels.min() < 0 or labels.max() > 9:
        raise data_error(root, "has labels outside 0..9")
    mask = None
    if all("exact_mask" in b for b in batches):
        mask = torch.from_numpy(np.concatenate([np.asarray(b["exact_mask"], dtype=bool) for b in batches]))
    return Split(images, labels, mask)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 DataModule (see :class:`gdws.data.base.ImageDataModule` for the options)."""

    dataset_name = "CIFAR-10"

    def load_split(self, train: bool) -> Split:
        """Read one split from ``root/cifar-10-batches-py``."""
        return read_cifar10(self.root, train)

    def download_data(self) -> None:
        """Download and extract the official archive (md5-verified) unless the batch files are present."""
        if has_cifar10(self.root):
            return
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(URL, download_root=self.root, md5=MD5)
