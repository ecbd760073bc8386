"""Result logging: one CSV row per run (file-locked), row.json in the run dir, Lightning/W&B loggers, and the
summary a run prints when it ends."""
from gdws.tracking.csv_log import COLUMNS, append_row, write_json
from gdws.tracking.git import git_commit
from gdws.tracking.loggers import build_logger, finish_logger, log_summary
from gdws.tracking.summary import run_summary

__all__ = ["COLUMNS", "append_row", "build_logger", "finish_logger", "git_commit", "log_summary", "run_summary",
           "write_json"]
