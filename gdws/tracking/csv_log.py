"""Append one result row per run to a shared CSV file, safely under concurrent multirun jobs."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Mapping

from filelock import FileLock

# Column order of results/runs.csv. Extra keys of a row are appended after these when the file is created.
COLUMNS = (
    "time", "git_commit", "table", "paper_row", "scale", "experiment", "model", "width", "data", "recipe",
    "checkpoint", "method", "prune_method", "prune_ratio", "gdws_beta", "gdws_constraint", "gdws_alphas",
    "gdws_form", "gdws_calibration", "gdws_calibration_samples", "gdws_whiten", "gdws_refit",
    "gdws_speedup_measured", "A_nat", "A_rob", "attack", "attack_ran", "n_eval", "size_MB",
    "size_MB_dense", "macs", "macs_dense", "fps", "throughput", "fps_dense", "throughput_dense", "fast_inference",
    "fast_forms", "threads", "device", "seed", "train_s", "alphas_s", "calibration_s",
    "convert_s", "gdws_layers", "eval_s", "run_dir",
)


def _format_line(values: list[Any]) -> str:
    """One CSV line (quoted as needed) for ``values``; None becomes an empty field."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue()


def _extend_header(path: Path, header: list[str], new: list[str]) -> list[str]:
    """Rewrite the CSV at ``path`` with ``new`` columns after ``header`` (empty in existing rows); returns the
    new header. Written to a temporary file first and renamed over the old one (atomic on POSIX)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    header = header + new
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        f.write(_format_line(header))
        for values in rows:
            f.write(_format_line(values + [""] * (len(header) - len(values))))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return header


def append_row(path: str | os.PathLike, row: Mapping[str, Any], timeout: float = 600.0) -> None:
    """Append ``row`` to the CSV at ``path``, creating it (and its folder) with a header on first use.

    A file lock (``path``.lock) serialises the read-header/append of concurrent jobs; the line is built
    completely beforehand and written with a single ``write`` + fsync, so a crashing run leaves either a
    whole row or nothing. Columns follow the existing header. A row with keys the header lacks (a column
    added since the file was started) extends it: the file is rewritten with the new columns empty in the
    old rows, through a temporary file and an atomic rename, so an interruption leaves the old file whole.
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
        missing = [k for k in row if k not in header]
        if missing:
            header = _extend_header(path, header, missing)
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
