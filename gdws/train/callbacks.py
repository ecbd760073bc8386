"""Checkpointing for adversarial training: keep the most robust epoch, and the last one for resuming."""
from __future__ import annotations

import os

from pytorch_lightning.callbacks import ModelCheckpoint


def best_checkpoint_callback(dirpath: str) -> ModelCheckpoint:
    """ModelCheckpoint writing ``dirpath/best.ckpt`` (max ``val/acc_rob``) and ``dirpath/last.ckpt``.

    The version counter is off so the names stay fixed across resumed runs.
    """
    return ModelCheckpoint(dirpath=dirpath, monitor="val/acc_rob", mode="max", save_last=True, save_top_k=1,
                           filename="best", auto_insert_metric_name=False, enable_version_counter=False)


def resume_checkpoint(dirpath: str) -> str | None:
    """``dirpath/last.ckpt`` when an earlier (possibly interrupted) run left it, else None.

    Pass the result as ``trainer.fit(..., ckpt_path=...)``.
    """
    path = os.path.join(dirpath, "last.ckpt")
    return path if os.path.isfile(path) else None
