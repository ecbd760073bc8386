"""Checkpointing for adversarial training: keep the most robust epoch, and the last one for resuming."""
from __future__ import annotations

import os

import torch
from pytorch_lightning.callbacks import ModelCheckpoint


def best_checkpoint_callback(dirpath: str) -> ModelCheckpoint:
    """ModelCheckpoint writing ``dirpath/best.ckpt`` (max ``val/acc_rob``).

    The version counter is off so the name stays fixed across resumed runs.
    """
    return ModelCheckpoint(dirpath=dirpath, monitor="val/acc_rob", mode="max", save_top_k=1,
                           filename="best", auto_insert_metric_name=False, enable_version_counter=False)


def last_checkpoint_callback(dirpath: str, filename: str = "last") -> ModelCheckpoint:
    """ModelCheckpoint writing ``dirpath/<filename>.ckpt`` after EVERY epoch, the state a resumed run starts from.

    (A monitored callback's ``save_last`` only rewrites last.ckpt in epochs that also improved the best, so
    a run resumed from it would repeat the epochs after the best one.)
    """
    return ModelCheckpoint(dirpath=dirpath, filename=filename, save_top_k=1, every_n_epochs=1,
                           auto_insert_metric_name=False, enable_version_counter=False)


def resume_checkpoint(dirpath: str) -> str | None:
    """``dirpath/last.ckpt`` when an earlier (possibly interrupted) run left it, else None.

    Pass the result as ``trainer.fit(..., ckpt_path=...)``.
    """
    path = os.path.join(dirpath, "last.ckpt")
    return path if os.path.isfile(path) else None


def accelerator_options(device: torch.device, devices: int = 1) -> dict:
    """Lightning Trainer ``accelerator``/``devices`` for the run's one ``device`` (a CUDA index pins that GPU
    when one process trains; a multi-process DDP trainer keeps its own device count)."""
    if device.type == "cpu":
        return {"accelerator": "cpu", "devices": devices}
    if devices == 1:
        return {"accelerator": "gpu", "devices": [device.index or 0]}
    return {"accelerator": "gpu", "devices": devices}
