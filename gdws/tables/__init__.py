"""The paper's CIFAR-10 tables regenerated from our runs: the paper's numbers (shipped as package data),
matching runs to paper rows, Markdown/LaTeX/CSV side-by-side tables, and the Figure-1, beta-sweep and
accuracy-vs-MACs (tradeoff) plots.

    runs = load_runs(["outputs/runs.csv"])
    write_paper_tables(runs, Path("outputs/tables"))       # <table>.csv/.md/.tex per paper table
"""
from gdws.tables.data import load_paper, load_runs
from gdws.tables.figure1 import plot_figure1
from gdws.tables.match import candidates, dense_reference, side_by_side, table_scales
from gdws.tables.report import write_own_tables, write_paper_tables
from gdws.tables.sweep import plot_beta_sweep, sweep_runs
from gdws.tables.tradeoff import plot_tradeoff, tradeoff_runs

__all__ = ["load_paper", "load_runs", "candidates", "dense_reference", "side_by_side", "table_scales",
           "write_paper_tables", "write_own_tables", "plot_figure1", "plot_beta_sweep", "sweep_runs", "plot_tradeoff",
           "tradeoff_runs"]
