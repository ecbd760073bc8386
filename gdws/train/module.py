"""The training recipes as LightningModules: standard, PGD, TRADES and fast (FGSM-RS) adversarial training.

``AdversarialTraining`` holds what the recipes share (SGD schedule, clean and PGD validation, AMP, memory
format); each subclass says how its training examples are made and scored. ``conf/train/*.yaml`` picks one
through ``_target_``; its ``method`` key is the recipe's label (checkpoint folder, result row).
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchattacks

from gdws.train.attacks import AttackView, amp_dtype
from gdws.train.estimate import TrainingTimeEstimate


class AdversarialTraining(pl.LightningModule):
    """What every recipe of the paper shares (reproduction.md section 2); subclasses define the training loss.

    Args:
        model: network taking images in [0, 1] (normalisation inside).
        method: the recipe's label as the config names it; None, or it must be the class's own ``method``
            (so that a row's label can never disagree with what was trained).
        epochs: length of the schedule; milestones are fractions of it.
        lr, momentum, weight_decay: SGD settings.
        milestones: fractions of ``epochs`` at which the learning rate is multiplied by ``lr_gamma``.
        eps: l_inf budget of the training attack (if any) and of the validation attack.
        val_attack_steps: PGD steps (step 2.5 * eps / steps, random start, eval mode) for ``val/acc_rob``.
        amp: autocast (bfloat16 on CPU and recent GPUs, float16 otherwise). Under float16 only the attack
            runs in half precision (with a sign-preserving gradient scale); the weight update stays float32
            because automatic optimisation has no loss scaler here.
        channels_last: use the channels-last memory format for the model and its inputs.
        allow_long: go on with a CPU training whose first steps estimate it at more than a day (otherwise it
            stops with a message naming the ways forward: gdws.train.estimate). Not a hyper-parameter: it
            changes neither the weights nor the checkpoint folder.
    """

    method: ClassVar[str]

    def __init__(self, model: nn.Module, method: str | None = None, epochs: int = 200, lr: float = 0.1,
                 momentum: float = 0.9, weight_decay: float = 5e-4, milestones: Sequence[float] = (0.5, 0.75),
                 lr_gamma: float = 0.1, eps: float = 8 / 255, val_attack_steps: int = 10, amp: bool = False,
                 channels_last: bool = False, allow_long: bool = False) -> None:
        super().__init__()
        if not hasattr(self, "method"):
            raise TypeError("AdversarialTraining is the base of the recipes: build StandardTraining, PGDTraining, "
                            "TRADESTraining or FastTraining (train=standard|pgd|trades|fgsm_rs)")
        if method is not None and method != self.method:
            raise ValueError(f"train.method={method!r} but train._target_ is {type(self).__name__}, which trains "
                             f"{self.method!r}; pick the recipe with train={method}")
        if int(epochs) <= 0 or int(val_attack_steps) < 0:
            raise ValueError(f"train.epochs must be positive and train.val_attack_steps >= 0; got "
                             f"epochs={epochs}, val_attack_steps={val_attack_steps}")
        if any(not 0 < float(f) <= 1 for f in milestones):
            raise ValueError(f"train.milestones are fractions of the epochs in (0, 1], e.g. [0.5, 0.75]; got {list(milestones)}")
        self.model = model
        self.allow_long = bool(allow_long)
        self.save_hyperparameters(ignore=["model", "allow_long"])  # includes the subclass's own arguments
        self.hparams.method = self.method
        self.hparams.milestones = [float(f) for f in milestones]  # plain list (no ListConfig) in checkpoints

    # ---- what a recipe defines ------------------------------------------------------------------
    def training_attack(self, view: nn.Module) -> torchattacks.Attack | None:
        """The attack that makes this recipe's training examples from ``view`` (None: clean images)."""
        raise NotImplementedError(f"{type(self).__name__} must define training_attack")

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits for train/acc): cross-entropy on the examples of :meth:`training_attack`."""
        dtype = self._amp_dtype()
        attack = self.training_attack(AttackView(self.model, dtype))
        x_train = attack(x, y) if attack is not None else x
        with self._autocast(dtype if dtype != torch.float16 else None):
            logits = self.model(x_train).float()
        return F.cross_entropy(logits, y), logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the wrapped model."""
        return self.model(x)

    def configure_callbacks(self) -> list[pl.Callback]:
        """The training-time estimate (printed after the first steps; a days-long CPU training stops there)."""
        return [TrainingTimeEstimate(allow_long=self.allow_long)]

    def setup(self, stage: str) -> None:
        """Switch the memory format before the strategy wraps the model (DDP buckets see the final strides)."""
        if self.hparams.channels_last:
            self.model.to(memory_format=torch.channels_last)

    # ---- helpers --------------------------------------------------------------------------------
    def _amp_dtype(self) -> torch.dtype | None:
        return amp_dtype(self.device) if self.hparams.amp else None

    def _autocast(self, dtype: torch.dtype | None):
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    # ---- steps ----------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One step: the recipe's loss (its attack runs in eval mode, the loss in train mode)."""
        x, y = batch
        loss, logits = self.training_loss(self._inputs(x), y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=y.shape[0])
        self.log("train/acc", acc, prog_bar=True, on_step=True, on_epoch=False, batch_size=y.shape[0])
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Clean and PGD accuracy on the held-out split (model in eval mode; an image counts as robust when
        both it and its attacked version are classified correctly)."""
        hp = self.hparams
        dtype = self._amp_dtype()
        # Lightning may validate under inference_mode; the attack needs autograd on fresh, normal tensors.
        with torch.inference_mode(False), torch.enable_grad():
            x, y = self._inputs(batch[0].clone()), batch[1].clone()
            x_adv = x
            if hp.val_attack_steps > 0:
                alpha = 2.5 * hp.eps / hp.val_attack_steps  # Madry et al.'s step: the ball's corners are reachable
                attack = torchattacks.PGD(AttackView(self.model, dtype), eps=hp.eps, alpha=alpha,
                                          steps=hp.val_attack_steps, random_start=True)
                x_adv = attack(x, y)
            with torch.no_grad(), self._autocast(dtype):
                nat = self.model(x).argmax(1) == y
                # The clean image is a point of the eps-ball too: robust = correct on both (so rob <= nat).
                rob = nat & (self.model(x_adv).argmax(1) == y)
        nat, rob = nat.float().mean(), rob.float().mean()
        self.log("val/acc_nat", nat, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=y.shape[0])
        self.log("val/acc_rob", rob, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=y.shape[0])

    def configure_optimizers(self) -> dict:
        """SGD with MultiStepLR at the configured fractions of ``epochs``, stepped once per epoch."""
        hp = self.hparams
        opt = torch.optim.SGD(self.model.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        epochs = sorted({max(1, round(f * hp.epochs)) for f in hp.milestones})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=epochs, gamma=hp.lr_gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class StandardTraining(AdversarialTraining):
    """Standard (non-adversarial) training: cross-entropy on the clean images; validation still runs PGD."""

    method: ClassVar[str] = "standard"

    def training_attack(self, view: nn.Module) -> None:
        """No attack: the clean images are the training examples."""
        return None


class PGDTraining(AdversarialTraining):
    """PGD adversarial training (Madry et al.): CE on PGD examples from a uniform random start.

    Args:
        step_size, steps: the PGD steps inside the ``eps``-ball (the paper: 10 steps of 2/255).
        **kwargs: the arguments of :class:`AdversarialTraining`.
    """

    method: ClassVar[str] = "pgd"

    def __init__(self, model: nn.Module, step_size: float = 2 / 255, steps: int = 10, **kwargs: Any) -> None:
        if int(steps) <= 0 or float(step_size) <= 0:
            raise ValueError(f"train.steps and train.step_size must be positive, got {steps}, {step_size}")
        super().__init__(model, **kwargs)

    def training_attack(self, view: nn.Module) -> torchattacks.Attack:
        """torchattacks.PGD with the recipe's budget (built per step: torchattacks fixes its device)."""
        hp = self.hparams
        return torchattacks.PGD(view, eps=hp.eps, alpha=hp.step_size, steps=hp.steps, random_start=True)


class FastTraining(AdversarialTraining):
    """Fast adversarial training (FGSM-RS, Wong et al. 2020): one step of ``step_size`` from a uniform start.

    Args:
        step_size: the FGSM step (10/255 for eps 8/255).
        **kwargs: the arguments of :class:`AdversarialTraining`.
    """

    method: ClassVar[str] = "fgsm_rs"

    def __init__(self, model: nn.Module, step_size: float = 10 / 255, **kwargs: Any) -> None:
        if float(step_size) <= 0:
            raise ValueError(f"train.step_size must be positive, got {step_size}")
        super().__init__(model, **kwargs)

    def training_attack(self, view: nn.Module) -> torchattacks.Attack:
        """torchattacks.FFGSM (uniform start in [-eps, eps], one signed step)."""
        return torchattacks.FFGSM(view, eps=self.hparams.eps, alpha=self.hparams.step_size)


class TRADESTraining(PGDTraining):
    """TRADES (Zhang et al.): CE on the clean images + ``trades_beta`` * KL(f(x) || f(x')), where x' maximises
    the KL (TPGD: start x + 0.001 * N(0, 1), sign steps).

    Args:
        trades_beta: weight of the KL term (6 in HYDRA's recipe).
        **kwargs: ``step_size``, ``steps`` and the arguments of :class:`AdversarialTraining`.
    """

    method: ClassVar[str] = "trades"

    def __init__(self, model: nn.Module, trades_beta: float = 6.0, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)

    def training_attack(self, view: nn.Module) -> torchattacks.Attack:
        """torchattacks.TPGD on the KL to the clean prediction."""
        hp = self.hparams
        return torchattacks.TPGD(view, eps=hp.eps, alpha=hp.step_size, steps=hp.steps)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE(f(x), y) + beta * KL, clean logits)."""
        dtype = self._amp_dtype()
        x_adv = self.training_attack(AttackView(self.model, dtype))(x, y)
        with self._autocast(dtype if dtype != torch.float16 else None):
            logits = self.model(x).float()
            kl = F.kl_div(F.log_softmax(self.model(x_adv).float(), dim=1), F.softmax(logits, dim=1),
                          reduction="batchmean")
        return F.cross_entropy(logits, y) + self.hparams.trades_beta * kl, logits
