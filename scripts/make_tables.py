"""Write the paper's CIFAR-10 tables with our measured numbers next to the paper's (results/tables/*.md).

    python scripts/make_tables.py [--runs results/runs.csv] [--paper ../shared/paper/cifar10_tables.csv]

Each paper row is matched to our latest run of the same table experiment (experiment=table_<name>), model,
method, pruning ratio and (where the paper gives one) GDWS beta. FPS is compared as the speed-up over the
dense model of the same table, since the paper timed a Jetson Xavier and we time whatever device ran.
Without the paper CSV the tables list our runs only.
"""
from __future__ import annotations

import argparse
import math
import numbers
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAPER = ROOT.parent / "shared" / "paper" / "cifar10_tables.csv"


def _num(value: object) -> float:
    """``value`` as float, NaN when empty."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: object, digits: int = 2) -> str:
    """Cell text: numbers rounded, missing values as '-'."""
    if isinstance(value, str):
        return value or "-"
    if isinstance(value, numbers.Integral):  # numpy integers too (pandas columns)
        return str(value)
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(df: pd.DataFrame) -> str:
    """A GitHub markdown table of ``df`` (no extra dependency)."""
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _same(a: object, b: object) -> bool:
    """Equal numbers, or both missing."""
    x, y = _num(a), _num(b)
    return (math.isnan(x) and math.isnan(y)) or (not math.isnan(x) and not math.isnan(y) and abs(x - y) < 1e-9)


def match_run(runs: pd.DataFrame, table: str, paper_row: pd.Series) -> pd.Series | None:
    """Our latest run for ``paper_row`` of ``table`` (None when not run yet)."""
    cand = runs[(runs.experiment == f"table_{table}") & (runs.model == paper_row.model) & (runs.method == paper_row.method)]
    cand = cand[cand.prune_ratio.map(lambda r: _same(r, paper_row.prune_ratio)).astype(bool)]
    if not math.isnan(_num(paper_row.beta)):
        cand = cand[cand.gdws_beta.map(lambda b: _same(b, paper_row.beta)).astype(bool)]
    return None if cand.empty else cand.sort_values("time").iloc[-1]


def table_side_by_side(runs: pd.DataFrame, paper: pd.DataFrame, table: str) -> pd.DataFrame:
    """One table: paper rows with our numbers alongside."""
    rows = []
    ours_by_row = {int(p.row): match_run(runs, table, p) for p in paper.itertuples(index=False)}
    for p in paper.itertuples(index=False):
        ours = ours_by_row[int(p.row)]
        dense_paper = paper[(paper.model == p.model) & (paper.method == "dense")]
        dense_ours = [ours_by_row[int(d.row)] for d in dense_paper.itertuples(index=False)]
        dense_ours = dense_ours[0] if dense_ours else None
        rows.append({
            "row": int(p.row), "model": p.model, "method": p.method, "beta": _num(p.beta), "prune": _num(p.prune_ratio),
            "A_nat": _num(ours.A_nat) if ours is not None else math.nan, "A_nat paper": _num(p.A_nat),
            "A_rob": _num(ours.A_rob) if ours is not None else math.nan, "A_rob paper": _num(p.A_rob),
            "size_MB": _num(ours.size_MB) if ours is not None else math.nan, "size_MB paper": _num(p.size_MB),
            "FPS": _num(ours.fps) if ours is not None else math.nan,
            "speed-up": _num(ours.fps) / _num(dense_ours.fps) if ours is not None and dense_ours is not None else math.nan,
            "speed-up paper": _num(p.fps) / _num(dense_paper.fps.iloc[0]) if len(dense_paper) else math.nan,
            "n_eval": str(int(_num(ours.n_eval))) if ours is not None else "",
            "device": ours.device if ours is not None else "",
        })
    return pd.DataFrame(rows)


def main() -> None:
    """Parse arguments and write one markdown file per table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "results" / "runs.csv")
    parser.add_argument("--paper", type=Path, default=DEFAULT_PAPER)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "tables")
    parser.add_argument("--data", default="cifar10", help="only runs on this dataset")
    args = parser.parse_args()
    if not args.runs.is_file():
        raise SystemExit(f"{args.runs} does not exist: run experiments first (bash experiments/table_admm.sh)")
    runs = pd.read_csv(args.runs, dtype={"experiment": str, "method": str})
    runs = runs[runs.data == args.data]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.paper.is_file():
        paper = pd.read_csv(args.paper)
        for table, rows in paper.groupby("table", sort=False):
            df = table_side_by_side(runs, rows, str(table))
            header = f"# Table \"{table}\" (CIFAR-10): ours next to the paper's\n\n"
            note = ("\nA_nat/A_rob in %; speed-up = FPS / FPS of the dense model in the same table (ours on our "
                    "device, the paper's on a Jetson Xavier). '-' = not run yet.\n")
            (args.out / f"{table}.md").write_text(header + markdown(df) + note)
            print(f"wrote {args.out / f'{table}.md'} ({df.A_rob.notna().sum()}/{len(df)} rows run)")
    else:
        print(f"{args.paper} not found: writing our runs only")
    # Experiments of our own (not a paper table, e.g. experiment=cpu_resnet18): every run, in order.
    own = runs[~runs.experiment.fillna("").astype(str).str.startswith("table_")].copy()
    own["mac_reduction"] = (own.macs_dense / own.macs).round(2)
    cols = ["time", "model", "width", "method", "gdws_beta", "gdws_budget", "gdws_alphas", "prune_ratio", "A_nat",
            "A_rob", "size_MB", "macs", "mac_reduction", "fps", "throughput", "n_eval", "attack", "device"]
    for experiment, rows in own.groupby(own.experiment.fillna("none")):
        (args.out / f"{experiment}.md").write_text(f"# {experiment}\n\n" + markdown(rows[cols]))
        print(f"wrote {args.out / f'{experiment}.md'} ({len(rows)} runs)")

if __name__ == "__main__":
    main()
