"""Robust ADMM channel pruning (Ye et al., ICCV 2019) as a pruning hook, with physical channel removal.

On top of the trained dense network: an ADMM phase pulls each prunable conv's weights towards "(1 - ratio) of
its filters non-zero" under the robust loss, a hard pruning zeroes the smallest filters (and everything their
channels feed, see gdws.prune.channels), a masked retraining recovers accuracy, and finally torch-pruning removes
the zeroed channels: the returned network really has fewer parameters and MACs.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from torch import nn

from gdws.prune.channels import dependency_graph, group_masks, prunable_convs, pruned_filters, remove_channels
from gdws.prune.masking import attach_masks, fold_parametrizations
from gdws.prune.modules import ADMMTraining
from gdws.prune.phase import check_ratio, claim_work_dir, run_phase


def channel_plan(model: nn.Module, ratio: float, convs: Sequence[str]) -> dict[str, list[int]]:
    """{conv name: its ``round(ratio * M)`` smallest-norm output filters} for the given convs."""
    return {name: pruned_filters(model.get_submodule(name).weight, ratio) for name in convs}


def admm_prune(model: nn.Module, datamodule: pl.LightningDataModule, work_dir: str, ratio: float,
               admm_epochs: int = 200, admm_lr: float = 0.01, admm_epoch: int = 20, rho: float = 1e-3,
               rho_growth: float = 1.3, retrain_epochs: int = 200, retrain_lr: float = 0.01,
               retrain_milestones: Sequence[float] = (0.4, 0.75), momentum: float = 0.9, weight_decay: float = 5e-4,
               recipe: dict | None = None, input_size: Sequence[int] = (3, 32, 32),
               limit_train_batches: int | float = 1.0, limit_val_batches: int | float = 1.0) -> nn.Module:
    """Remove ``ratio`` of the output channels of every block-internal conv of ``model``; returns a new module.

    Args:
        model: the trained network (left unchanged), on the device to train on.
        datamodule: the run's DataModule (training split; the validation split picks the best retrained epoch).
        work_dir: folder for the phases' checkpoints; a rerun resumes or reuses them.
        ratio: share of output filters removed from each prunable conv, in [0, 1).
        admm_epochs, admm_lr: the ADMM phase (constant learning rate).
        admm_epoch, rho, rho_growth: Z/U update period in epochs, initial penalty, its growth per update.
        retrain_epochs, retrain_lr, retrain_milestones: masked retraining (lr x0.1 at these fractions of it).
        momentum, weight_decay: SGD settings of both phases.
        recipe: AdversarialTraining options of both phases (eps, step_size, steps, val_attack_steps, amp); the
            loss is CE on PGD examples crafted in train mode.
        input_size: the input shape (C, H, W) that torch-pruning traces the network with.
        limit_train_batches, limit_val_batches: Trainer limits (shrink the phases for CPU runs).

    Returns:
        The network with the pruned channels physically removed, in eval mode on the model's device.
    """
    ratio = check_ratio(ratio)
    convs = prunable_convs(model, dependency_graph(model, input_size))
    if not convs:
        raise ValueError(f"ADMM found no conv whose output channels can be removed in {type(model).__name__} "
                         "(convs whose channels feed a residual addition are not prunable)")
    recipe = dict(recipe or {})
    milestones = [float(f) for f in retrain_milestones]
    settings = dict(ratio=ratio, admm_epochs=admm_epochs, admm_lr=admm_lr, admm_epoch=admm_epoch, rho=rho,
                    rho_growth=rho_growth, retrain_epochs=retrain_epochs, retrain_lr=retrain_lr,
                    retrain_milestones=milestones, momentum=momentum, weight_decay=weight_decay, recipe=recipe,
                    input_size=list(input_size), limit_train_batches=limit_train_batches,
                    limit_val_batches=limit_val_batches)
    work = Path(claim_work_dir(work_dir, model, "admm", settings))
    device = next(model.parameters()).device
    limits = dict(limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches)
    common = dict(momentum=momentum, weight_decay=weight_decay, **recipe)

    net = copy.deepcopy(model)
    admm = ADMMTraining(net, targets=convs, ratio=ratio, admm_epoch=admm_epoch, rho=rho, rho_growth=rho_growth,
                        epochs=admm_epochs, lr=admm_lr, milestones=[], **common)
    run_phase(admm, datamodule, work / "admm", device, select="last", **limits)  # the last W is the closest to Z
    plan = channel_plan(net, ratio, convs)
    attach_masks(net, group_masks(net, dependency_graph(net, input_size), plan))
    retrain = ADMMTraining(net, epochs=retrain_epochs, lr=retrain_lr, milestones=milestones, **common)
    run_phase(retrain, datamodule, work / "retrain", device, **limits)
    fold_parametrizations(net)
    return remove_channels(net, plan, input_size).to(device).eval()
