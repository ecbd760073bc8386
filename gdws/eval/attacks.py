"""Evaluation attacks built from the `attack` config group (torchattacks, l_inf, images in [0, 1])."""
from __future__ import annotations

from typing import Any, Mapping

import torchattacks
from torch import nn

ATTACKS = ("none", "pgd", "autoattack")


def _check(attack_cfg: Mapping[str, Any]) -> str:
    """Validate ``attack_cfg`` and return its lower-cased name."""
    name = str(attack_cfg.get("name", "")).lower()
    if name not in ATTACKS:
        raise ValueError(f"attack.name must be one of {ATTACKS} (e.g. attack=pgd), got {name!r}")
    if name != "none" and not 0 < float(attack_cfg["eps"]) < 1:
        raise ValueError(f"attack.eps is in pixel units of [0, 1] (e.g. 0.0313725 for 8/255), got {attack_cfg['eps']}")
    return name


def build_attack(model: nn.Module, attack_cfg: Mapping[str, Any]) -> torchattacks.Attack | None:
    """The torchattacks attack described by ``attack_cfg``, or None for ``name: none``.

    ``pgd``: eps, step_size, steps, random_start (the paper: 8/255, 1/255, 100, one random start);
    ``autoattack``: eps, norm, version ('standard'), n_classes, seed. Attacks run the model in eval mode.
    """
    name = _check(attack_cfg)
    if name == "pgd":
        return torchattacks.PGD(
            model,
            eps=float(attack_cfg["eps"]),
            alpha=float(attack_cfg["step_size"]),
            steps=int(attack_cfg["steps"]),
            random_start=bool(attack_cfg.get("random_start", True)),
        )
    if name == "autoattack":
        return torchattacks.AutoAttack(
            model,
            norm=str(attack_cfg.get("norm", "Linf")),
            eps=float(attack_cfg["eps"]),
            version=str(attack_cfg.get("version", "standard")),
            n_classes=int(attack_cfg.get("n_classes", 10)),
            seed=attack_cfg.get("seed"),
        )
    return None


def attack_spec(attack_cfg: Mapping[str, Any]) -> str:
    """A short, unambiguous description of ``attack_cfg`` for result tables, e.g. ``pgd100-step1/255-eps8/255-rs``."""
    name = _check(attack_cfg)
    if name == "none":
        return "none"
    eps = f"eps{255 * float(attack_cfg['eps']):g}/255"
    if name == "pgd":
        step = f"{255 * float(attack_cfg['step_size']):g}/255"
        start = "rs" if attack_cfg.get("random_start", True) else "nors"
        return f"pgd{int(attack_cfg['steps'])}-step{step}-{eps}-{start}"
    return f"autoattack-{attack_cfg.get('version', 'standard')}-{attack_cfg.get('norm', 'Linf')}-{eps}"
