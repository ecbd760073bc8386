"""Write the paper's CIFAR-10 tables with our numbers beside the paper's, one table and one accuracy-vs-MACs plot
per experiment of our own, and the Figure-1 and beta-sweep plots (all under --out).

    python scripts/make_tables.py --runs outputs/runs.csv          # your runs -> outputs/tables/
    python scripts/make_tables.py --out results/tables             # the committed runs -> the committed tables

--out defaults to outputs/tables under the project (ignored by git, like outputs/runs.csv): the committed
results/tables/ are written only when named. Per paper table (hydra, admm, lightweight, robnet): <table>.csv,
.md and .tex, every paper row with ours beside it ('-' where not run) and the run each of our values came from.
A table is filled from the runs of one scale (paper first, then cpu, then other labels, then smoke; --scale picks
one): a paper row takes our newest run of that scale with the same table, model, method, pruning ratio and (where
the paper gives one) beta. The paper's numbers ship with the package (gdws/tables/paper_cifar10.csv). Library:
gdws.tables.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from gdws.tables import (load_runs, plot_beta_sweep, plot_figure1, plot_tradeoff, table_scales, write_own_tables,
                         write_paper_tables)

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; --out defaults to outputs/tables under $PROJECT_ROOT (as run.py's outputs), else ROOT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", default=sorted((ROOT / "results").glob("**/*runs.csv")),
                        help="runs CSVs (default: every *runs.csv under results/, the committed runs)")
    parser.add_argument("--scale", default=None, help="only runs of this scale (paper, cpu, custom, smoke); "
                        "default: each paper table from its first scale that has runs")
    parser.add_argument("--data", default="cifar10", help="only runs on this dataset")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("PROJECT_ROOT", ROOT)) / "outputs" / "tables",
                        help="output folder (default outputs/tables; results/tables only when named here)")
    parser.add_argument("--figure-models", nargs="+", default=["vgg16", "vgg16_hydra"],
                        help="models of the Figure-1 plot")
    parser.add_argument("--sweep", default=None, metavar="EXPERIMENT[:MODEL]",
                        help="the beta sweep to plot (default: the experiment and model with the most betas)")
    parser.add_argument("--tradeoff", nargs="+", default=[], metavar="EXPERIMENT",
                        help="also plot accuracy and FPS against MACs for these experiments (e.g. table_admm)")
    parser.add_argument("--note", default="", help="a sentence added to every paper table's title, e.g. which "
                        "network the rows used when it is not the paper's")
    parser.add_argument("--no-plots", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, write the tables and plots, and list what was written."""
    args = parse_args(argv)
    missing = [str(p) for p in args.runs if not p.is_file()]
    if missing or not args.runs:
        where = ", ".join(missing) or "results/**/*runs.csv"
        raise SystemExit(f"no runs CSV at {where}: run experiments first (python scripts/run_table.py admm)")
    runs = load_runs(args.runs, scale=args.scale, data=args.data)
    for table, side in write_paper_tables(runs, args.out, note=args.note).items():
        scales = table_scales(runs, table)
        other = f"; also run at scale {', '.join(scales[1:])} (--scale)" if len(scales) > 1 else ""
        print(f"wrote {args.out / table}.csv/.md/.tex ({side.A_rob.notna().sum()}/{len(side)} rows run"
              f"{', scale ' + scales[0] if scales else ''}{other})")
    own = write_own_tables(runs, args.out)
    for experiment, n in own.items():
        print(f"wrote {args.out / experiment}.md ({n} runs)")
    if args.no_plots:
        return
    for experiment in [*own, *args.tradeoff]:
        tradeoff = plot_tradeoff(runs, args.out, experiment)
        print(f"wrote {tradeoff}" if tradeoff else f"{experiment}: fewer than two GDWS runs, no tradeoff plot")
    name = "_".join(args.figure_models)
    print(f"wrote {plot_figure1(runs, args.out / f'fps_vs_robustness_{name}.png', tuple(args.figure_models))}")
    experiment, _, model = (args.sweep or "").partition(":")
    sweep = plot_beta_sweep(runs, args.out, experiment or None, model or None)
    print(f"wrote {sweep}" if sweep else "no beta-constrained GDWS runs: no beta sweep plot")


if __name__ == "__main__":
    main()
