"""Write the paper's tables side by side with ours, and one table per experiment of our own, to a folder."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from gdws.tables.data import load_paper
from gdws.tables.match import side_by_side
from gdws.tables.render import markdown, table_latex, table_markdown

# Columns of the tables of our own experiments (every run, oldest first).
OWN_COLUMNS = ("time", "model", "width", "method", "gdws_constraint", "gdws_alphas", "gdws_form", "prune_ratio", "A_nat",
               "A_rob", "size_MB", "macs", "mac_ratio", "fps", "fps_dense", "fps_ratio", "throughput",
               "throughput_dense", "n_eval", "attack", "device", "run_dir")


def _provenance(side: pd.DataFrame) -> str:
    """The scales and devices of the runs in a side-by-side table, for its title."""
    scales = ", ".join(sorted(s for s in side.scale.unique() if s)) or "scale not recorded"
    devices = ", ".join(sorted(d for d in side.device.unique() if d))
    return f"{scales}; {devices}" if devices else "no runs yet"


def write_paper_tables(runs: pd.DataFrame, out: Path, paper: pd.DataFrame | None = None,
                       note: str = "") -> dict[str, pd.DataFrame]:
    """Per paper table, ``<table>.csv``, ``.md`` and ``.tex`` in ``out``; returns the side-by-side frames.
    ``note`` joins every title (e.g. which network the rows used, when it is not the paper's)."""
    paper = load_paper() if paper is None else paper
    out.mkdir(parents=True, exist_ok=True)
    sides = {}
    for table in paper.table.unique():
        side = sides[table] = side_by_side(runs, paper, table)
        title = f'Table "{table}" (CIFAR-10): ours ({_provenance(side)}) / paper' + (f". {note}" if note else "")
        side.to_csv(out / f"{table}.csv", index=False)
        (out / f"{table}.md").write_text(table_markdown(side, title))
        (out / f"{table}.tex").write_text(table_latex(side, title))
    return sides


def write_own_tables(runs: pd.DataFrame, out: Path) -> dict[str, int]:
    """``<experiment>.md`` in ``out`` for each experiment that is no paper table: all its runs, in order.
    Returns the number of runs per experiment."""
    own = runs[(runs.table == "") & (runs.experiment != "")].sort_values("when")
    # fps_ratio: against the dense network timed beside it in the same run (empty where it was not)
    own = own.assign(mac_ratio=(own.macs_dense / own.macs).round(2), fps_ratio=(own.fps / own.fps_dense).round(2))
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for experiment, rows in own.groupby("experiment"):
        (out / f"{experiment}.md").write_text(f"# {experiment}\n\n" + markdown(rows[list(OWN_COLUMNS)]))
        counts[str(experiment)] = len(rows)
    return counts
