"""The training phases of the pruning baselines, as subclasses of the training recipes (same attacks, validation,
checkpointing): HYDRA's cosine phases over the trainable subset, and ADMM's train-mode PGD loss with its penalty.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torchattacks
from torch import Tensor, nn

from gdws.prune.channels import filter_projection
from gdws.train import AdversarialTraining, PGDTraining, TRADESTraining


class CosineSchedule:
    """Mixin for a recipe class: a cosine learning rate over ``epochs`` that updates only the parameters with
    ``requires_grad`` (HYDRA's prune phase trains scores and BN affine with the weights frozen)."""

    def configure_optimizers(self: AdversarialTraining) -> dict:
        """SGD over the trainable parameters, cosine annealing stepped once per epoch."""
        hp = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(hp.epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class CosineTRADES(CosineSchedule, TRADESTraining):
    """TRADES with HYDRA's per-phase cosine schedule (HYDRA's loss)."""


class CosinePGD(CosineSchedule, PGDTraining):
    """PGD training with HYDRA's per-phase cosine schedule."""


#: The losses a HYDRA phase can train with (``prune.loss``).
COSINE_RECIPES: dict[str, type[AdversarialTraining]] = {"trades": CosineTRADES, "pgd": CosinePGD}


class ADMMTraining(PGDTraining):
    """Ye et al.'s robust ADMM: CE on PGD examples crafted in train mode, plus sum_i rho/2 ||W_i - Z_i + U_i||^2.

    Z_i starts at the filter projection of W_i and U_i at zero; at the start of every ``admm_epoch``-th epoch
    Z_i <- Proj(W_i + U_i), U_i <- U_i + W_i - Z_i and rho is multiplied by ``rho_growth``. Z, U and rho are
    buffers of this module, so they are saved in (and resumed from) its checkpoints. Without ``targets`` it is
    the plain train-mode PGD training of the masked retraining phase.

    Args:
        model: the network.
        targets: names of the conv layers whose weights are projected.
        ratio: share of output filters the projection zeroes in each target.
        admm_epoch, rho, rho_growth: the ADMM schedule.
        **kwargs: PGDTraining options (epochs, lr, milestones, eps, step_size, steps, ...).
    """

    def __init__(self, model: nn.Module, targets: Sequence[str] = (), ratio: float = 0.0, admm_epoch: int = 20,
                 rho: float = 1e-3, rho_growth: float = 1.3, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if int(admm_epoch) < 1:
            raise ValueError(f"prune.admm_epoch must be >= 1, got {admm_epoch}")
        self.targets = list(targets)
        for i, name in enumerate(self.targets):
            w = self._weight(i)
            self.register_buffer(f"admm_z{i}", filter_projection(w, ratio))
            self.register_buffer(f"admm_u{i}", torch.zeros_like(w))
        self.register_buffer("admm_rho", torch.tensor(float(rho)))

    def _weight(self, i: int) -> Tensor:
        return self.model.get_submodule(self.targets[i]).weight

    def penalty(self) -> Tensor:
        """The augmented-Lagrangian term sum_i rho/2 ||W_i - Z_i + U_i||^2 (zero without targets)."""
        total = torch.zeros((), device=self.admm_rho.device)
        for i in range(len(self.targets)):
            total = total + (self._weight(i) - getattr(self, f"admm_z{i}") + getattr(self, f"admm_u{i}")).pow(2).sum()
        return self.admm_rho / 2 * total

    def training_attack(self, view: nn.Module) -> torchattacks.Attack:
        """The PGD attack, run with the model in train mode (BN batch statistics), as Ye et al. craft it."""
        attack = super().training_attack(view)
        attack.set_model_training_mode(model_training=True, batchnorm_training=True)
        return attack

    def training_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(CE on the PGD examples + the ADMM penalty, logits)."""
        loss, logits = super().training_loss(x, y)
        return loss + self.penalty(), logits

    @torch.no_grad()
    def on_train_epoch_start(self) -> None:
        """The Z/U/rho update, at the start of epochs admm_epoch, 2 * admm_epoch, ...

        At the start rather than the end of an epoch: every checkpoint (written as an epoch ends) then holds the
        state before the update, and a resumed run performs it exactly once, whatever the order of Lightning's
        epoch-end hooks.
        """
        epoch = self.current_epoch
        if not self.targets or epoch == 0 or epoch % int(self.hparams.admm_epoch) != 0:
            return
        for i in range(len(self.targets)):
            w, z, u = self._weight(i), getattr(self, f"admm_z{i}"), getattr(self, f"admm_u{i}")
            z.copy_(filter_projection(w + u, self.hparams.ratio))
            u.add_(w - z)
        self.admm_rho.mul_(float(self.hparams.rho_growth))
