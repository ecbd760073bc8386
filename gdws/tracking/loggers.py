"""Lightning loggers (CSV, W&B) built from the `logger` config group, usable with or without training."""
from __future__ import annotations

import numbers
from typing import Any, Mapping

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, WandbLogger


def build_logger(logger_cfg: DictConfig | None) -> Logger | None:
    """Instantiate the configured Lightning logger; None when ``logger=none`` (``_target_: null``)."""
    if logger_cfg is None or logger_cfg.get("_target_") is None:
        return None
    return instantiate(logger_cfg)


def log_summary(logger: Logger | None, row: Mapping[str, Any], hparams: Mapping[str, Any] | None = None) -> None:
    """Record the run's final result row: numeric fields as metrics, everything as W&B summary.

    Works whether or not a Trainer used the logger before (a run that only loads a checkpoint still gets
    its W&B run / metrics.csv).
    """
    if logger is None:
        return
    if hparams is not None:
        logger.log_hyperparams(dict(hparams))
    numeric = {
        f"final/{k}": float(v)
        for k, v in row.items()
        if isinstance(v, numbers.Number) and not isinstance(v, bool)
    }
    logger.log_metrics(numeric)
    if isinstance(logger, WandbLogger):
        logger.experiment.summary.update({k: v for k, v in row.items() if v is not None})
    logger.save()


def finish_logger(logger: Logger | None, failed: bool = False) -> None:
    """Close the logger's run, so that every multirun job gets its own W&B run (call in a ``finally``)."""
    if logger is None:
        return
    logger.finalize("failed" if failed else "success")
    if isinstance(logger, WandbLogger):
        import wandb  # only needed, and only imported, when W&B is in use

        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)
