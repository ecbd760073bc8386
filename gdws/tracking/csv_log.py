"""Append one result row per run to a shared CSV file, safely under concurrent multirun jobs."""
from __future__ import annotations

import csv
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

from filelock import FileLock

# Column order of results/runs.csv. Extra keys of a row are appended after these when the file is created.
COLUMNS = (
    "time", "git_commit", "table", "paper_row", "scale", "experiment", "model", "width", "data", "recipe", "checkpoint", "method",
    "prune_method", "prune_ratio", "gdws_beta", "gdws_constraint", "gdws_alphas", "A_nat", "A_rob", "attack",
    "n_eval", "size_MB", "size_MB_dense", "macs", "macs_dense", "fps", "throughput", "fast_inference", "threads", "device",
    "seed", "train_s", "alphas_s", "convert_s", "gdws_layers", "eval_s", "run_dir",
)


def _format_line(values: list[Any]) -> str:
    """One CSV line (quoted as needed) for ``values``; None becomes an empty field."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue()


def append_row(path: str | os.PathLike, row: Mapping[str, Any], timeout: float = 600.0) -> None:
    """Append ``row`` to the CSV at ``path``, creating it (and its folder) with a header on first use.

    A file lock (``path``.lock) serialises the read-header/append of concurrent jobs; the line is built
    completely beforehand and written with a single ``write`` + fsync, so a crashing run leaves either a
    whole row or nothing. Columns follow the existing header; keys the header lacks are dropped with a
    warning (they stay in the run's row.json).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=timeout):
        header: list[str] | None = None
        if path.exists() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                header = next(csv.reader(f), None)
        text = ""
        if not header:
            header = list(COLUMNS) + [k for k in row if k not in COLUMNS]
            text = _format_line(header)
        dropped = sorted(set(row) - set(header))
        if dropped:
            warnings.warn(f"{path} has no columns {dropped}; they are kept only in the run's row.json", stacklevel=2)
        text += _format_line([row.get(k) for k in header])
        with path.open("a", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path: str | os.PathLike, row: Mapping[str, Any]) -> None:
    """Write ``row`` as indented JSON to ``path`` (the run directory's row.json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(dict(row), indent=2, default=str) + "\n")
    tmp.replace(path)  # atomic: a reader never sees a half-written file
