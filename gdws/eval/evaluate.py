"""Clean and adversarial accuracy of a classifier on a test loader."""
from __future__ import annotations

import warnings
from typing import Any, Iterable, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from gdws.core.discovery import model_device_dtype
from gdws.eval.attacks import EvalAttack, build_attack


def _depends_on_input(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether the model's output has a gradient path to its input (False e.g. when GDWS kept G = 0 somewhere)."""
    x = x[:1].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
    if not out.requires_grad:
        return False
    (grad,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    return grad is not None


def evaluate(
    model: nn.Module,
    loader: Iterable,
    attack: EvalAttack | Mapping[str, Any],
    progress: bool = True,
) -> dict:
    """A_nat and A_rob (in %) of ``model`` on ``loader`` under ``attack`` (an attack or its config node).

    Batches are (images in [0, 1], labels) and are moved to the model's device. The model is evaluated in
    eval mode; a model handed over in train mode gets a warning, is switched to eval mode and restored
    afterwards. An image counts as robust when the model classifies both the clean image and its
    adversarial example correctly (the worst case over the two, as AutoAttack counts), so A_rob <= A_nat.
    Under :class:`~gdws.eval.attacks.NoAttack` A_rob is None. A model whose output has no gradient path to its
    input (a layer converted to G = 0) cannot be attacked: its A_rob equals A_nat, with a warning, and
    ``attack_ran`` is False (True when the attack ran).
    Returns ``dict(A_nat, A_rob, n_eval)``, plus ``attack_ran`` when there is an attack.
    """
    attack = build_attack(attack)  # a bad config fails before the model's mode is touched
    if model.training:
        warnings.warn(
            "evaluate() was given a model in train mode; it is evaluated in eval mode (BatchNorm running "
            "statistics, no dropout) and put back in train mode afterwards. Call model.eval() first.",
            stacklevel=2,
        )
    was_training = model.training
    model.eval()
    device = model_device_dtype(model)[0]
    adversary = attack.on(model)
    n_seen = n_clean = n_robust = 0
    attackable: bool | None = None  # checked on the first batch
    try:
        for x, y in tqdm(loader, desc=f"eval ({attack.name})", disable=not progress, leave=False):
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                clean_ok = model(x).argmax(1) == y
            n_clean += int(clean_ok.sum())
            if adversary is not None:
                if attackable is None:
                    attackable = _depends_on_input(model, x)
                    if not attackable:
                        warnings.warn(f"{attack.name}: the model's output has no gradient path to its input, so the "
                                      "attack cannot run; A_rob is reported equal to A_nat", stacklevel=2)
                x_adv = adversary(x, y) if attackable else x
                with torch.no_grad():
                    n_robust += int((clean_ok & (model(x_adv).argmax(1) == y)).sum())
            n_seen += len(y)
    finally:
        model.train(was_training)
    if n_seen == 0:
        raise ValueError("evaluate() got an empty loader: check data.eval_subset and the test split")
    out = {"A_nat": 100.0 * n_clean / n_seen, "A_rob": None, "n_eval": n_seen}
    if adversary is not None:
        out.update(A_rob=100.0 * n_robust / n_seen, attack_ran=attackable)
    return out
