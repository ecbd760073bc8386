"""Evaluation attacks (l_inf, images in [0, 1]): one small class per option of the `attack` config group.

Each ``conf/attack/*.yaml`` names its class in ``_target_``; ``build_attack(cfg.attack)`` instantiates it. An
attack object describes itself for the result row (``spec``) and builds the torchattacks attack for a given
model (``on``); torchattacks runs the model in eval mode while it attacks.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torchattacks
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from gdws.errors import BadValue


def _eps_text(eps: float) -> str:
    """``eps`` in the 1/255 units the papers use, e.g. ``eps8/255``."""
    return f"eps{255 * eps:g}/255"


def _check_eps(eps: float) -> None:
    if not 0 < eps < 1:
        raise BadValue(f"attack.eps is in pixel units of [0, 1] (e.g. 0.0313725 for 8/255), got {eps}")


class EvalAttack(ABC):
    """An evaluation attack: a name, a description for result tables, and a factory of torchattacks attacks."""

    name: ClassVar[str]

    @abstractmethod
    def on(self, model: nn.Module) -> torchattacks.Attack | None:
        """The torchattacks attack on ``model`` (None when nothing is attacked)."""

    @abstractmethod
    def spec(self) -> str:
        """A short, unambiguous description for result tables, e.g. ``pgd100-step1/255-eps8/255-rs``."""


@dataclass(frozen=True)
class NoAttack(EvalAttack):
    """Clean accuracy only (A_rob stays empty)."""

    name: ClassVar[str] = "none"

    def on(self, model: nn.Module) -> None:
        """Nothing to attack."""
        return None

    def spec(self) -> str:
        """``none``."""
        return "none"


@dataclass(frozen=True)
class PGD(EvalAttack):
    """l_inf PGD on the cross-entropy of the true label: ``steps`` sign steps of ``step_size`` inside the
    ``eps``-ball, from a uniform random start when ``random_start`` (the paper: 8/255, 1/255, 100, one start)."""

    eps: float
    step_size: float
    steps: int
    random_start: bool = True
    name: ClassVar[str] = "pgd"

    def __post_init__(self) -> None:
        _check_eps(self.eps)
        if self.steps < 1 or self.step_size <= 0:
            raise BadValue(f"attack.steps and attack.step_size must be positive, got {self.steps}, {self.step_size}")

    def on(self, model: nn.Module) -> torchattacks.Attack:
        """torchattacks.PGD on ``model``."""
        return torchattacks.PGD(model, eps=self.eps, alpha=self.step_size, steps=self.steps,
                                random_start=self.random_start)

    def spec(self) -> str:
        """E.g. ``pgd100-step1/255-eps8/255-rs`` (``nors`` without the random start)."""
        start = "rs" if self.random_start else "nors"
        return f"pgd{self.steps}-step{255 * self.step_size:g}/255-{_eps_text(self.eps)}-{start}"


@dataclass(frozen=True)
class AutoAttack(EvalAttack):
    """AutoAttack (Croce & Hein; ``standard``: APGD-CE, APGD-T, FAB-T, Square) with ``n_classes`` outputs."""

    eps: float
    norm: str = "Linf"
    version: str = "standard"
    n_classes: int = 10
    seed: int | None = None
    name: ClassVar[str] = "autoattack"

    def __post_init__(self) -> None:
        _check_eps(self.eps)

    def on(self, model: nn.Module) -> torchattacks.Attack:
        """torchattacks.AutoAttack on ``model``."""
        return torchattacks.AutoAttack(model, norm=self.norm, eps=self.eps, version=self.version,
                                       n_classes=self.n_classes, seed=self.seed)

    def spec(self) -> str:
        """E.g. ``autoattack-standard-Linf-eps8/255``."""
        return f"autoattack-{self.version}-{self.norm}-{_eps_text(self.eps)}"


def build_attack(attack_cfg: Mapping[str, Any] | EvalAttack) -> EvalAttack:
    """The attack described by ``attack_cfg`` (a config node with a ``_target_``, as ``conf/attack/*.yaml``).

    An :class:`EvalAttack` is returned as it is. A bad value (e.g. ``attack.eps=8``) raises BadValue (a ValueError).
    """
    if isinstance(attack_cfg, EvalAttack):
        return attack_cfg
    if "_target_" not in attack_cfg:
        raise BadValue(f"an attack config needs a _target_ (pick one with attack=pgd|autoattack|none), got {dict(attack_cfg)}")
    try:
        attack = instantiate(attack_cfg)
    except InstantiationException as err:  # Hydra wraps the class's own ValueError: surface that message
        raise BadValue(f"bad attack config: {err}") from err
    if not isinstance(attack, EvalAttack):
        raise BadValue(f"attack._target_ must name a gdws.eval.attacks.EvalAttack, got {type(attack).__name__}")
    return attack


def attack_spec(attack_cfg: Mapping[str, Any] | EvalAttack) -> str:
    """The result-table description of the attack ``attack_cfg`` (see :meth:`EvalAttack.spec`)."""
    return build_attack(attack_cfg).spec()
