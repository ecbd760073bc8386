"""Spectral decay of the conv weights during training: does training give GDWS something to exploit?

GDWS keeps, per input channel c, the top g_c singular components of the M x (k*k) matrix W_c. It gains
MACs only where the energy (sigma^2) concentrates in few components; at random init it is spread evenly.
``SpectralLog`` records, every few epochs, the mean share of sigma^2 in the top 1/2/4 components of each
K > 1 conv, next to the same numbers at initialisation, in ``<dirpath>/spectra.csv``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from torch import nn

from gdws.core.allocation import Decomposition

TOP = (1, 2, 4)


def energy_shares(model: nn.Module, top: tuple[int, ...] = TOP) -> dict[str, dict[int, float]]:
    """Per K > 1 conv of ``model``: the mean over input channels of the share of sigma^2 in the top-k components."""
    shares = {}
    for name, conv in model.named_modules():
        if isinstance(conv, nn.Conv2d) and conv.kernel_size != (1, 1) and conv.groups == 1:
            scores = Decomposition(conv.weight.detach()).scores  # [C, r] sigma^2, descending
            total = scores.sum(1).clamp_min(torch.finfo(torch.float64).tiny)
            shares[name] = {k: float((scores[:, :k].sum(1) / total).mean()) for k in top if k <= scores.shape[1]}
    return shares


class SpectralLog(Callback):
    """Append per-layer energy shares to ``dirpath/spectra.csv`` at init (epoch 0) and every ``every_n_epochs``.

    The rows of a resumed training continue the same file (the init rows are written once).
    """

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 2) -> None:
        self.path = Path(dirpath) / "spectra.csv"
        self.every = max(1, int(every_n_epochs))

    def _write(self, epoch: int, model: nn.Module) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["epoch", "layer"] + [f"top{k}" for k in TOP])
            for layer, share in energy_shares(model).items():
                writer.writerow([epoch, layer] + [f"{share.get(k, 1.0):.4f}" for k in TOP])

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record the weights as training starts them (random init), once per training."""
        if trainer.is_global_zero and trainer.current_epoch == 0 and not self.path.exists():
            self._write(0, pl_module.model)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record after every ``every_n_epochs`` epochs and after the last one."""
        done = trainer.current_epoch + 1
        if trainer.is_global_zero and (done % self.every == 0 or done == trainer.max_epochs):
            self._write(done, pl_module.model)
