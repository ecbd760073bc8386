"""Shared pytest fixtures: the real CIFAR-10 folder used by the data and pipeline tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gdws.data.cifar10 import has_cifar10

REPO = Path(__file__).resolve().parents[1]
SHARED_BUILD = REPO.parent / "shared" / "data" / "cifar10" / "build.py"


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder containing ``cifar-10-batches-py``.

    Looked up in order: ``$GDWS_DATA``, the repository's ``./data``, else rebuilt from ``../shared`` into a
    temporary folder. Skips (with the reason) only when none of these exists, as on a machine that has
    neither the data nor the shared rebuild kit.
    """
    for candidate in (os.environ.get("GDWS_DATA"), REPO / "data"):
        if candidate and has_cifar10(candidate):
            return Path(candidate)
    if not SHARED_BUILD.is_file():
        pytest.skip("real CIFAR-10 unavailable: set GDWS_DATA to a folder with cifar-10-batches-py "
                    f"(no {SHARED_BUILD} to rebuild it from)")
    out = tmp_path_factory.mktemp("cifar10")
    subprocess.run([sys.executable, str(SHARED_BUILD), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread, restored afterwards.

    The tests' tensors are small: their time goes into thousands of tiny ops, where a second OpenMP thread
    adds only synchronisation, and on a shared CPU spinning threads stall them many times over (measured on
    the 2-core CI machine under load: robnet_free's width-0.25 forward 0.13 s on one thread, up to 22 s on two).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
