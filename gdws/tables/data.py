"""The paper's CIFAR-10 numbers (shipped with the package) and our runs, loaded into one shape."""
from __future__ import annotations

import os
import re
from importlib import resources
from typing import Iterable

import numpy as np
import pandas as pd

NUMERIC = ("width", "prune_ratio", "gdws_beta", "A_nat", "A_rob", "n_eval", "size_MB", "size_MB_dense", "macs",
           "macs_dense", "fps", "throughput", "fps_dense", "throughput_dense", "gdws_layers", "paper_row")
# Columns the matching and rendering read; rows written before a column existed get it empty.
TEXT = ("time", "table", "scale", "experiment", "model", "data", "method", "prune_method", "gdws_constraint",
        "gdws_budget", "gdws_alphas", "gdws_form", "device", "run_dir", "git_commit", "attack")


def load_paper() -> pd.DataFrame:
    """The paper's four CIFAR-10 tables (29 rows): table, row, model, method, beta, prune_ratio, A_nat, A_rob,
    size_MB, fps (FPS at batch 1 on a Jetson Xavier)."""
    with resources.files("gdws.tables").joinpath("paper_cifar10.csv").open() as f:
        return pd.read_csv(f)


def _text(value: object) -> str:
    """A CSV cell as text, '' when empty."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def constraint_of(row: pd.Series) -> str:
    """The GDWS constraint of a run ('beta=0.5', 'macs_ratio=2', ...; '' without GDWS).

    Rows written before the ``gdws_constraint`` column had ``gdws_budget`` for a MAC or channel budget and
    ``gdws_beta`` for LEGO's error bound."""
    given = _text(row.get("gdws_constraint"))
    if given:
        return given
    budget = _text(row.get("gdws_budget"))
    if budget:
        return budget
    beta = row.get("gdws_beta")
    return f"beta={float(beta):g}" if pd.notna(beta) else ""


def beta_of(constraint: str) -> float:
    """LEGO's beta when ``constraint`` is one ('beta=0.5' -> 0.5), else NaN."""
    m = re.fullmatch(r"\s*beta\s*=\s*(\S+)\s*", constraint)
    return float(pd.to_numeric(m.group(1), errors="coerce")) if m else np.nan


def setting_of(row: pd.Series) -> str:
    """The method the run asked for, in the paper's vocabulary: dense, gdws, <prune> or <prune>+gdws.

    The pipeline labels a GDWS run that replaced no layer 'dense' (that network is what ran); for matching a
    paper row what counts is the setting requested, so the constraint decides whether GDWS was asked for."""
    prune = _text(row.get("prune_method")) or _text(row.get("method")).replace("+gdws", "")
    prune = "" if prune in ("dense", "gdws") else prune
    gdws = bool(row["gdws_constraint"]) or "gdws" in _text(row.get("method"))
    if prune:
        return f"{prune}+gdws" if gdws else prune
    return "gdws" if gdws else "dense"


def load_runs(paths: Iterable[str | os.PathLike], scale: str | None = None, data: str | None = None) -> pd.DataFrame:
    """Rows of one or more runs CSVs (results/runs.csv and the like), normalised for matching; only those of
    ``scale`` (paper, cpu, smoke) and dataset ``data`` when given.

    Adds ``source`` (the file), fills ``table`` from ``experiment`` ('table_admm' -> 'admm') and
    ``gdws_constraint`` from the older columns where a row lacks them, and derives ``setting`` (the
    requested method), ``beta`` (from the constraint) and ``when`` (parsed time, for newest-wins)."""
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False).assign(source=str(p)) for p in paths]
    runs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for col in TEXT:
        runs[col] = runs[col].fillna("") if col in runs else ""
    for col in NUMERIC:
        runs[col] = pd.to_numeric(runs[col], errors="coerce") if col in runs else np.nan
    from_experiment = runs.experiment.str.extract(r"^table_(\w+)$", expand=False).fillna("")
    runs["table"] = runs.table.where(runs.table != "", from_experiment)
    runs["gdws_constraint"] = runs.apply(constraint_of, axis=1) if len(runs) else ""
    runs["setting"] = runs.apply(setting_of, axis=1) if len(runs) else ""
    runs["beta"] = runs.gdws_constraint.map(beta_of).astype(float)
    runs["when"] = pd.to_datetime(runs.time, utc=True, errors="coerce", format="ISO8601")
    if scale:
        runs = runs[runs.scale == scale]
    return runs[runs.data == data] if data else runs
