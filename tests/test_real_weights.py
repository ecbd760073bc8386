"""The real third-party CIFAR ResNet-20 (../shared/weights): the one-line config loads it at its published accuracy.

Skipped, with the reason, on a machine without the shared weights folder.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import gdws
from gdws.data import CIFAR10DataModule
from gdws.models import load_checkpoint
from conftest import compose_config

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO.parent / "shared" / "weights" / "resnet20-12fca82f.th"
PUBLISHED = 91.6  # % on the 1,017 exact test images (../shared/weights/README.md)

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"no third-party checkpoint at {WEIGHTS}")]


@pytest.fixture(scope="module")
def resnet20() -> torch.nn.Module:
    """The model exactly as `run.py model=resnet20 weights.path=... model.normalize=imagenet` builds and loads it."""
    overrides = ["model=resnet20", f"weights.path={WEIGHTS}", "model.normalize=imagenet"]
    cfg = compose_config(overrides)
    model = instantiate(OmegaConf.to_container(cfg.model, resolve=True))
    return load_checkpoint(model, cfg.weights.path).eval()


@pytest.fixture(scope="module")
def exact_test_set(cifar10_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,017 losslessly rebuilt CIFAR-10 test images (float in [0, 1]) and their labels."""
    dm = CIFAR10DataModule(root=str(cifar10_root), exact_only=True, eval_batch_size=1017)
    dm.prepare_data()
    dm.setup("test")
    images, labels = zip(*dm.test_dataloader())
    return torch.cat(images), torch.cat(labels)


def _accuracy(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    # in batches of 64, as an evaluation would run: a GDWS network on all 1,017 images at once takes twice as long
    images, labels = data
    with torch.no_grad():
        predicted = torch.cat([model(batch).argmax(1) for batch in images.split(64)])
    return 100.0 * float((predicted == labels).float().mean())


def test_third_party_resnet20_reaches_its_published_accuracy(resnet20, exact_test_set):
    assert len(exact_test_set[1]) == 1017
    assert abs(_accuracy(resnet20, exact_test_set) - PUBLISHED) <= 0.5


def test_its_normalisation_matters(resnet20, exact_test_set):
    # Without normalisation the same weights fall far below: the imagenet statistics are really applied.
    raw = instantiate({"_target_": "gdws.models.create_model", "name": "resnet20", "normalize": None})
    raw.load_state_dict(resnet20.state_dict())
    assert _accuracy(raw.eval(), exact_test_set) < PUBLISHED - 20


def test_small_network_budget_costs_little_accuracy(resnet20, exact_test_set):
    # 10 % fewer MACs over the whole network: the study's first point (results/real_resnet20) within 1 point.
    converted, report = gdws.convert(resnet20, macs_ratio=1.1)
    assert report.attrs["macs_total_before"] / report.attrs["macs_total_after"] >= 1.1
    assert report["converted"].sum() > 0
    assert _accuracy(converted, exact_test_set) >= PUBLISHED - 1.0
