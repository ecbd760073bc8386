"""HYDRA (Sehwag et al., NeurIPS 2020) as a pruning hook: unstructured, robustness-aware score-based pruning.

On top of the trained dense network: a *prune* phase learns the scores (and BN affine; weights frozen) under
the robust loss, then a *finetune* phase trains the weights under the fixed mask. The result is the same
architecture with exact zeros, so its size counts non-zeros while its MACs and speed stay the dense network's.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytorch_lightning as pl
from torch import nn

from gdws.prune.masking import fold_parametrizations
from gdws.prune.modules import COSINE_RECIPES
from gdws.prune.phase import check_ratio, claim_work_dir, run_phase
from gdws.prune.scores import attach_scores, fix_masks, scored_layers


def _freeze_weights(model: nn.Module) -> None:
    """Leave only the scores and the BatchNorm affine parameters trainable (HYDRA's prune phase)."""
    bn = {n for n, m in model.named_modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))}
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith(".scores") or name.rpartition(".")[0] in bn)


def hydra_prune(model: nn.Module, datamodule: pl.LightningDataModule, work_dir: str, ratio: float,
                prune_epochs: int = 20, prune_lr: float = 0.1, finetune_epochs: int = 100, finetune_lr: float = 0.01,
                momentum: float = 0.9, weight_decay: float = 1e-4, loss: str = "trades", trades_beta: float = 6.0,
                recipe: dict | None = None,
                limit_train_batches: int | float = 1.0, limit_val_batches: int | float = 1.0) -> nn.Module:
    """Prune ``ratio`` of the weights of every Conv2d and Linear of ``model`` with HYDRA; returns a new module.

    Args:
        model: the trained network (left unchanged), on the device to train on.
        datamodule: the run's DataModule (its training split trains both phases, its validation split picks
            each phase's best epoch by robust accuracy).
        work_dir: folder for the phases' checkpoints; a rerun resumes or reuses them.
        ratio: share of each layer's weights set to zero, in [0, 1) (each layer keeps round((1 - ratio) * n)).
        prune_epochs, prune_lr: the score phase (cosine schedule).
        finetune_epochs, finetune_lr: the weight phase under the fixed mask (cosine schedule).
        momentum, weight_decay: SGD settings of both phases.
        loss: the robust loss of both phases, ``trades`` (HYDRA's) or ``pgd``; trades_beta weighs TRADES' KL term.
        recipe: the training recipe's options shared by both phases (eps, step_size, steps, val_attack_steps,
            amp).
        limit_train_batches, limit_val_batches: Trainer limits (shrink the phases for CPU runs).

    Returns:
        An ordinary module (masks folded in: exact zeros) in eval mode on the model's device.
    """
    ratio = check_ratio(ratio)
    if not scored_layers(model):
        raise ValueError(f"HYDRA found no Conv2d or Linear layer to prune in {type(model).__name__}")
    if loss not in COSINE_RECIPES:
        raise ValueError(f"prune.loss must be one of {sorted(COSINE_RECIPES)}, got {loss!r}")
    recipe = dict(recipe or {})
    settings = dict(ratio=ratio, prune_epochs=prune_epochs, prune_lr=prune_lr, finetune_epochs=finetune_epochs,
                    finetune_lr=finetune_lr, momentum=momentum, weight_decay=weight_decay, loss=loss,
                    trades_beta=trades_beta, recipe=recipe,
                    limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches)
    work = claim_work_dir(work_dir, model, "hydra", settings)
    device = next(model.parameters()).device
    limits = dict(limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches)
    common = dict(momentum=momentum, weight_decay=weight_decay, **recipe)
    if loss == "trades":
        common["trades_beta"] = trades_beta
    phase = COSINE_RECIPES[loss]

    net = copy.deepcopy(model)
    attach_scores(net, ratio)  # initial scores follow |w|: the first mask is magnitude pruning
    _freeze_weights(net)
    run_phase(phase(net, epochs=prune_epochs, lr=prune_lr, **common), datamodule, Path(work) / "prune",
              device, **limits)
    fix_masks(net)
    net.requires_grad_(True)  # finetune trains every weight and bias, under the learnt mask
    run_phase(phase(net, epochs=finetune_epochs, lr=finetune_lr, **common), datamodule,
              Path(work) / "finetune", device, **limits)
    return fold_parametrizations(net).to(device).eval()
