"""gdws.calibration in a run: checked settings, the calibration set (training split, PGD, cache) and the row."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from gdws.data import SyntheticDataModule
from gdws.models import create_model
from gdws.pipeline.calibration import check_calibration, draw_calibration


def _gdws(**changes) -> dict:
    base = {"calibration": "clean", "calibration_samples": 8, "whiten": True, "refit": True, "fisher": False,
            "calibration_attack": {"eps": 8 / 255, "step_size": 2 / 255, "steps": 3}}
    base.update(changes)
    return OmegaConf.create(base)


@pytest.mark.parametrize("changes,message", [
    ({"calibration": "adversarial"}, "gdws.calibration must be one of"),
    ({"calibration_samples": 0}, "calibration_samples"),
    ({"calibration_samples": 8.0}, "calibration_samples"),
    ({"calibration_samples": True}, "calibration_samples"),
    ({"calibration": "mixed", "calibration_samples": 1}, "calibration_samples"),
    ({"refit": "yes"}, "gdws.refit"),
    ({"whiten": 1}, "gdws.whiten"),
    ({"fisher": "true"}, "gdws.fisher"),
    ({"refit_rounds": -2}, "refit_rounds"),
    ({"calibration": "none", "refit_rounds": 1}, "refit_rounds > 0 needs a calibration set"),  # would not run
    ({"refit": False, "refit_rounds": 1}, "refit_rounds > 0 needs a calibration set"),
    ({"calibration": "pgd", "calibration_attack": {"eps": -1, "step_size": 0.01, "steps": 3}}, "eps"),
    ({"calibration": "pgd", "calibration_attack": {"eps": 0.03, "step_size": 0.01, "steps": 0}}, "steps"),
    ({"calibration": "mixed", "calibration_attack": {"eps": 0.03, "step_size": float("nan"), "steps": 2}},
     "step_size"),
])
def test_bad_calibration_settings_are_one_clear_error(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        check_calibration(_gdws(**changes))


@pytest.mark.parametrize("mode", ["none", "clean", "pgd", "mixed"])
def test_good_calibration_settings_pass(mode) -> None:
    check_calibration(_gdws(calibration=mode))


def test_calibration_images_come_from_the_training_split_and_pgd_moves_them_within_eps() -> None:
    dm = SyntheticDataModule(num_train=64, num_test=16, val_size=0, batch_size=16)
    dm.setup("fit")
    model = create_model("vgg16", width=0.125).eval()
    train = dm.splits["train"].images.float() / 255
    attack = {"eps": 4 / 255, "step_size": 2 / 255, "steps": 2}
    clean = draw_calibration(dm, model, 10, "clean")
    mixed = draw_calibration(dm, model, 10, "mixed", attack)
    pgd = draw_calibration(dm, model, 10, "pgd", attack)
    # every clean image is one of the training images, bit for bit (augmentation off)
    flat = train.reshape(train.shape[0], -1)
    assert all((flat == img.reshape(1, -1)).all(1).any() for img in clean)
    assert torch.equal(mixed[:5], clean[:5]) and not torch.equal(mixed[5:], clean[5:])
    for adv in (pgd, mixed[5:]):
        ref = clean[-adv.shape[0]:]
        assert (adv - ref).abs().max() <= 4 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_a_calibrated_run_records_its_settings_and_caches_the_set(run_smoke, smoke_project: Path) -> None:
    overrides = ("gdws.macs_ratio=1.5", "gdws.calibration=mixed", "gdws.calibration_samples=16",
                 "gdws.calibration_attack.steps=2", "gdws.fisher=true", "gdws.refit_rounds=1", "metrics.fps=false",
                 "attack=none")
    row = run_smoke(*overrides)
    assert row["gdws_calibration"] == "mixed" and row["gdws_calibration_samples"] == 16
    assert row["gdws_refit"] is True and row["gdws_whiten"] is True and row["gdws_fisher"] is True
    assert row["gdws_refit_rounds"] == 1 and row["gdws_layers"] > 0
    assert row["macs_dense"] / row["macs"] >= 1.5
    cached = list((smoke_project / "cache" / "calibration").glob("*-mixed-n16-*.pt"))
    assert len(cached) == 1 and torch.load(cached[0], weights_only=True).shape[0] == 16
    with open(smoke_project / row["run_dir"] / "gdws_report.csv", newline="") as f:
        layers = [r for r in csv.DictReader(f) if r["converted"] == "True"]
    assert layers and all(float(r["calib_err_after"]) <= float(r["calib_err_before"]) for r in layers)
    before = cached[0].stat().st_mtime_ns
    again = run_smoke(*overrides)  # a second run reuses the cached set (same weights, same spec)
    assert cached[0].stat().st_mtime_ns == before and again["A_nat"] == row["A_nat"]
    plain = run_smoke("gdws.macs_ratio=1.5", "metrics.fps=false", "attack=none")
    assert plain["gdws_calibration"] == "none" and plain["gdws_calibration_samples"] is None
