"""Clean and adversarial accuracy of a classifier on a test loader."""
from __future__ import annotations

import warnings
from typing import Any, Iterable, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from gdws.eval.attacks import build_attack


def _device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


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
    attack_cfg: Mapping[str, Any],
    max_samples: int | None = None,
    progress: bool = True,
) -> dict:
    """A_nat and A_rob (in %) of ``model`` on ``loader`` under the attack ``attack_cfg``.

    Batches are (images in [0, 1], labels) and are moved to the model's device. The model is evaluated in
    eval mode; a model handed over in train mode gets a warning, is switched to eval mode and restored
    afterwards. An image counts as robust when the model classifies both the clean image and its
    adversarial example correctly (the worst case over the two, as AutoAttack counts), so A_rob <= A_nat.
    ``max_samples`` stops after that many images; with ``name: none`` A_rob is None. A model whose output
    does not depend on its input (a layer converted to G = 0) cannot be attacked: its A_rob equals A_nat.
    Returns ``dict(A_nat, A_rob, n_eval)``.
    """
    if model.training:
        warnings.warn(
            "evaluate() was given a model in train mode; it is evaluated in eval mode (BatchNorm running "
            "statistics, no dropout) and put back in train mode afterwards. Call model.eval() first.",
            stacklevel=2,
        )
    was_training = model.training
    model.eval()
    device = _device_of(model)
    attack = build_attack(model, attack_cfg)
    n_seen = n_clean = n_robust = 0
    attackable: bool | None = None  # checked on the first batch
    try:
        for x, y in tqdm(loader, desc=f"eval ({attack_cfg.get('name')})", disable=not progress, leave=False):
            if max_samples is not None:
                x, y = x[: max_samples - n_seen], y[: max_samples - n_seen]
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                clean_ok = model(x).argmax(1) == y
            n_clean += int(clean_ok.sum())
            if attack is not None:
                if attackable is None:
                    attackable = _depends_on_input(model, x)
                x_adv = attack(x, y) if attackable else x
                with torch.no_grad():
                    n_robust += int((clean_ok & (model(x_adv).argmax(1) == y)).sum())
            n_seen += len(y)
            if max_samples is not None and n_seen >= max_samples:
                break
    finally:
        model.train(was_training)
    if n_seen == 0:
        raise ValueError("evaluate() got an empty loader: check data.eval_subset and the test split")
    return {
        "A_nat": 100.0 * n_clean / n_seen,
        "A_rob": 100.0 * n_robust / n_seen if attack is not None else None,
        "n_eval": n_seen,
    }
