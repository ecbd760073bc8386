"""Lightning's console lines that a user of run.py cannot act on, filtered out of the console.

What stays: the progress bar, the training-time estimate, warnings about the user's own settings and errors.
What goes: the start-up tip advertising a cloud logger, the accelerator inventory (the run's device is in the
training-time estimate and the row), notices that echo a limit the config set on purpose (batches per epoch,
the last epoch reached), the warning that a checkpoint folder is not empty (the pipeline's folders hold their
training record and, on a deliberate resume, last.ckpt), and a deprecation inside Lightning itself.
"""
from __future__ import annotations

import logging
import warnings

_INFO_LINES = ("💡 Tip:", "GPU available:", "TPU available:", "HPU available:", "CUDA_VISIBLE_DEVICES:",
               "was configured so", "stopped: `max_epochs=")
_WARNINGS = (r"Checkpoint directory .* exists and is not empty", r"`isinstance\(treespec, LeafSpec\)` is deprecated")
_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")


class _DropLines(logging.Filter):
    """Drops the log records that contain one of ``_INFO_LINES``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _INFO_LINES)


def quiet_lightning() -> None:
    """Filter Lightning's start-up noise out of the console (call before building a Trainer; idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in logger.filters):
            logger.addFilter(_DropLines())
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
