"""AdversarialTraining: one LightningModule for PGD, TRADES, fast (FGSM-RS) and standard training."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F

from gdws.train.attacks import amp_dtype, make_attack

METHODS = ("pgd", "trades", "fgsm_rs", "standard")


class AdversarialTraining(pl.LightningModule):
    """Train ``model`` with one of the paper's recipes (reproduction.md section 2).

    Args:
        model: network taking images in [0, 1] (normalisation inside).
        method: ``pgd`` (CE on PGD examples), ``trades`` (CE + beta * KL), ``fgsm_rs`` (Wong et al.), ``standard``.
        epochs: length of the schedule; milestones are fractions of it.
        lr, momentum, weight_decay: SGD settings.
        milestones: fractions of ``epochs`` at which the learning rate is multiplied by ``lr_gamma``.
        eps, step_size, steps: l_inf budget, step size and number of steps of the training attack
            (``fgsm_rs`` uses one step of ``step_size``).
        trades_beta: weight of the KL term for ``trades``.
        val_attack_steps: PGD steps (step 2.5 * eps / steps, random start, eval mode) for ``val/acc_rob``.
        amp: autocast (bfloat16 on CPU and recent GPUs, float16 otherwise). Under float16 only the attack
            runs in half precision (with a sign-preserving gradient scale); the weight update stays float32
            because automatic optimisation has no loss scaler here.
        channels_last: use the channels-last memory format for the model and its inputs.
    """

    def __init__(self, model: nn.Module, method: str = "pgd", epochs: int = 200, lr: float = 0.1,
                 momentum: float = 0.9, weight_decay: float = 5e-4, milestones: Sequence[float] = (0.5, 0.75),
                 lr_gamma: float = 0.1, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10,
                 trades_beta: float = 6.0, val_attack_steps: int = 10, amp: bool = False,
                 channels_last: bool = False) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"train.method must be one of {', '.join(METHODS)}, got {method!r}")
        if int(epochs) <= 0 or int(val_attack_steps) < 0 or (method in ("pgd", "trades") and int(steps) <= 0):
            raise ValueError(f"train.epochs and train.steps must be positive, val_attack_steps >= 0; got "
                             f"epochs={epochs}, steps={steps}, val_attack_steps={val_attack_steps}")
        if any(not 0 < float(f) <= 1 for f in milestones):
            raise ValueError(f"train.milestones are fractions of the epochs in (0, 1], e.g. [0.5, 0.75]; got {list(milestones)}")
        self.model = model
        self.save_hyperparameters(ignore=["model"])
        self.hparams.milestones = [float(f) for f in milestones]  # plain list (no ListConfig) in checkpoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the wrapped model."""
        return self.model(x)

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
        """One step: craft the training examples (eval-mode attack), then the loss in train mode."""
        hp = self.hparams
        x, y = batch
        x = self._inputs(x)
        dtype = self._amp_dtype()
        x_adv = x
        if hp.method != "standard":
            x_adv = make_attack(hp.method, self.model, hp.eps, hp.step_size, hp.steps, dtype)(x, y)
        with self._autocast(dtype if dtype != torch.float16 else None):
            if hp.method == "trades":
                logits = self.model(x).float()
                kl = F.kl_div(F.log_softmax(self.model(x_adv).float(), dim=1), F.softmax(logits, dim=1),
                              reduction="batchmean")
                loss = F.cross_entropy(logits, y) + hp.trades_beta * kl
            else:  # CE on the attacked (pgd, fgsm_rs) or clean (standard) images
                logits = self.model(x_adv).float()
                loss = F.cross_entropy(logits, y)
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
                x_adv = make_attack("pgd", self.model, hp.eps, alpha, hp.val_attack_steps, dtype)(x, y)
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
