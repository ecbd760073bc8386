"""Result logging: one CSV row per run (file-locked), row.json in the run dir, Lightning/W&B loggers, and the
summary a run prints when it ends."""
from __future__ import annotations

import importlib
from typing import Any

from gdws.tracking.csv_log import COLUMNS, append_row, write_json
from gdws.tracking.git import git_commit
from gdws.tracking.summary import run_summary

__all__ = ["COLUMNS", "append_row", "build_logger", "finish_logger", "git_commit", "log_summary", "run_summary",
           "write_json"]
_LOGGERS = ("build_logger", "finish_logger", "log_summary")


def __getattr__(name: str) -> Any:
    """The loggers' names, imported on first use: Hydra imports this package at start-up for the sweep summary
    (conf/hydra/default.yaml), and a run refused by validation should not wait for Lightning to load."""
    if name in _LOGGERS:
        return getattr(importlib.import_module("gdws.tracking.loggers"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
