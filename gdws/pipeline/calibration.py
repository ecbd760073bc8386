"""The calibration set of a data-aware GDWS run (``gdws.calibration``): checked settings, drawn and cached.

Always drawn from the TRAINING split (augmentation off), never from the images accuracy is measured on.
``clean``: N training images; ``pgd``: their PGD examples crafted on the network being converted (for a
robust network the outputs to preserve are those on adversarial inputs too); ``mixed``: the first half clean,
the second half replaced by PGD examples. The set is cached under ``paths.cache_dir``/calibration, keyed by the
weights' fingerprint and every setting that makes it, so sweeps over budgets craft the PGD examples once.
"""
from __future__ import annotations

import numbers
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from gdws.core.alphas import pgd_attack
from gdws.core.settings import CalibrationSettings, check_positive, check_refit_rounds
from gdws.pipeline.context import settings_key, to_plain
from gdws.utils import weights_fingerprint

MODES = ("none", "clean", "pgd", "mixed")


def check_calibration(g: DictConfig | dict) -> None:
    """One ValueError for a bad data-aware setting of the ``gdws`` config (before anything is loaded or trained)."""
    mode = str(g.get("calibration", "none")).lower() if g.get("calibration") is not None else "none"
    if mode not in MODES:
        raise ValueError(f"gdws.calibration must be one of {', '.join(MODES)}, got {g.get('calibration')!r}")
    settings = calibration_settings(g)  # every data-aware option (whiten, refit, fisher, ...), checked there
    # refit_rounds > 0 without a calibration set would silently not run: refused
    check_refit_rounds(settings.refit_rounds, refitting=mode != "none" and settings.refit)
    if mode == "none":
        return
    n = g.get("calibration_samples")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < (2 if mode == "mixed" else 1):
        raise ValueError(f"gdws.calibration_samples must be an int >= {2 if mode == 'mixed' else 1} (training "
                         f"images in the calibration set), got {n!r}")
    if mode in ("pgd", "mixed"):
        attack = g.get("calibration_attack") or {}
        check_positive(attack.get("eps"), "gdws.calibration_attack.eps")
        check_positive(attack.get("step_size"), "gdws.calibration_attack.step_size")
        steps = attack.get("steps")
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ValueError(f"gdws.calibration_attack.steps must be an int >= 1, got {steps!r}")


def calibration_settings(g: DictConfig | dict) -> CalibrationSettings:
    """The ``gdws`` config's data-aware options (the keys named as CalibrationSettings' fields), checked."""
    return CalibrationSettings.from_config(g, prefix="gdws.")


def calibration_mode(g: DictConfig) -> str:
    """The run's calibration mode, lower-case ('none' when unset)."""
    return str(g.calibration).lower() if g.get("calibration") is not None else "none"


def draw_calibration(datamodule, model: nn.Module, n: int, mode: str, attack: dict | None = None,
                     seed: int = 1, batch_size: int = 128) -> torch.Tensor:
    """``n`` training images (augmentation off, drawn with ``seed``), all or half replaced by PGD examples.

    The seed differs from the alphas' (0), so the two do not share images by construction. PGD: L_inf,
    ``attack`` = {eps, step_size, steps}, random start, cross-entropy on the true labels, model in eval mode.
    """
    if mode not in MODES[1:]:
        raise ValueError(f"mode must be one of {', '.join(MODES[1:])}, got {mode!r}")
    images, labels = datamodule.train_images(int(n), seed=seed, augment=False)
    if mode == "clean":
        return images
    start = 0 if mode == "pgd" else images.shape[0] // 2
    device = next(model.parameters()).device
    adv = pgd_attack(model, images[start:].to(device), labels[start:].to(device), attack["eps"], attack["step_size"],
                     int(attack["steps"]), seed=seed, batch_size=batch_size).cpu()
    return torch.cat([images[:start], adv])


def calibration_set(cfg: DictConfig, model: nn.Module, datamodule) -> torch.Tensor | None:
    """The run's calibration images (None for gdws.calibration=none), cached under paths.cache_dir."""
    g = cfg.gdws
    mode = calibration_mode(g)
    if mode == "none":
        return None
    attack = to_plain(g.calibration_attack) if mode in ("pgd", "mixed") else None
    data = {k: cfg.data.get(k) for k in ("_target_", "train_subset", "val_size")}
    n = int(g.calibration_samples)
    key = settings_key({"mode": mode, "n": n, "attack": attack, "data": data})
    cache = Path(str(cfg.paths.cache_dir)) / "calibration" / f"{weights_fingerprint(model)}-{mode}-n{n}-{key}.pt"
    if cache.is_file():
        return torch.load(cache, map_location="cpu", weights_only=True)
    images = draw_calibration(datamodule, model, n, mode, attack)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save(images, tmp)
        tmp.replace(cache)  # atomic: a killed run never leaves a truncated set behind
    except OSError as exc:  # e.g. a read-only cache folder: still usable, just not cached
        warnings.warn(f"could not cache the calibration set at {cache}: {exc}")
    return images
