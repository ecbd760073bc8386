"""Plots of scripts/bench_runtime.py's CSV, written beside it.

- ``NAME.png``: dense / GDWS speed ratio per runtime against the MAC ratio (the physical limit, the diagonal), one
  panel per (threads, batch), with the min-max spread over the interleaved rounds.
- with ``--rows RUNS.csv`` also ``NAME_accuracy.png``, Figure-1 style: A_rob of run.py rows (dense, and the GDWS
  rows at ``gdws_constraint == macs_ratio=R`` of the same network) against the batch-1 speed ratio that the study
  measured for the network converted at R. The study converts with the same settings as the rows (mixed
  calibration, Fisher) but does not re-check accuracy, so the rows' calibration must match (``--calibration``).

    python scripts/bench_runtime_plot.py results/perf/bench_runtime_vgg16_w1.0.csv --rows results/fullwidth/runs.csv
"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def speed_panels(d: pd.DataFrame, out: str) -> None:
    """Speed ratio against MAC ratio per runtime, one panel per (threads, batch)."""
    d = d[d.net != "dense"]
    panels = sorted({(t, b) for t, b in zip(d.threads, d.batch)})
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), sharey=True, squeeze=False)
    for ax, (t, b) in zip(axes[0], panels):
        for rt, g in d[(d.threads == t) & (d.batch == b)].groupby("runtime"):
            ax.errorbar(g.mac_ratio, g.ratio, yerr=[g.ratio - g.ratio_min, g.ratio_max - g.ratio], marker="o",
                        capsize=3, label=rt)
        top = d.mac_ratio.max()
        ax.plot([1, top], [1, top], "k:", lw=1, label="MAC ratio (limit)")
        ax.axhline(1, color="grey", lw=0.5)
        ax.set(title=f"batch {b}, {t} thread{'s' if t > 1 else ''}", xlabel="MAC ratio dense / GDWS")
    axes[0][0].set_ylabel("speed ratio GDWS / dense")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def accuracy_points(d: pd.DataFrame, rows: pd.DataFrame, calibration: str) -> pd.DataFrame:
    """One point per (runtime, network) at batch 1 and the fewest threads: speed ratio (median, min, max) and
    the A_rob of the matching PGD row (dense: the dense row; 'Rx': macs_ratio=R with ``calibration``, Fisher, no
    alternating rounds)."""
    d = d[(d.batch == 1) & (d.threads == d.threads.min())]
    pgd = rows[rows.attack.str.startswith("pgd")]
    dense = pgd[pgd.method == "dense"]
    if dense.empty:
        raise SystemExit("--rows has no dense PGD row to anchor the plot")
    # the study's conversion: Fisher weighting, no alternating rounds
    rounds = pgd.gdws_refit_rounds.fillna(0) if "gdws_refit_rounds" in pgd else 0
    gdws = pgd[(pgd.method == "gdws") & (pgd.gdws_calibration == calibration) & (pgd.gdws_fisher == True)  # noqa: E712
               & (rounds == 0)]
    a_rob = {"dense": dense.A_rob.iloc[-1]}
    for net in d.net.unique():
        hit = gdws[gdws.gdws_constraint == f"macs_ratio={net.rstrip('x')}"]
        if len(hit):
            a_rob[net] = hit.A_rob.iloc[-1]
    return d[d.net.isin(a_rob)].assign(A_rob=lambda t: t.net.map(a_rob))


def accuracy_plot(points: pd.DataFrame, out: str, title: str) -> None:
    """A_rob against batch-1 speed ratio, one line per runtime from the dense point through the GDWS rows; the
    shaded band is 'within 1 point of dense'."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for rt, g in points.groupby("runtime"):
        g = g.sort_values("ratio")
        ax.errorbar(g.ratio, g.A_rob, xerr=[g.ratio - g.ratio_min, g.ratio_max - g.ratio], marker="o", capsize=3,
                    label=rt)
    for net, g in points.groupby("net"):  # one label per network, at its fastest runtime
        p = g.loc[g.ratio.idxmax()]
        ax.annotate(net if net == "dense" else f"GDWS, {net} fewer MACs", (p.ratio, p.A_rob), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    dense = points[points.net == "dense"].A_rob.iloc[0]
    ax.set_ylim(min(points.A_rob.min(), dense - 2) - 0.5, dense + 1)  # 1-point band visible around dense
    ax.axhspan(dense - 1, dense, color="green", alpha=0.08, lw=0)
    ax.axvline(1, color="grey", lw=0.5)
    ax.set(xlabel="batch-1 FPS / FPS of the dense network on the same runtime", ylabel="A_rob (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    """Parse the options; write the speed panels and, with --rows, the accuracy plot."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", help="scripts/bench_runtime.py's CSV")
    p.add_argument("--rows", nargs="+", help="run.py rows CSV(s) with the network's rows (A_rob for the accuracy plot)")
    p.add_argument("--checkpoint", default="", help="keep only rows whose checkpoint contains this (the network)")
    p.add_argument("--calibration", default="mixed", help="calibration of the GDWS rows to plot")
    p.add_argument("--title", default="A_rob against measured batch-1 speed-up (PGD-20)")
    args = p.parse_args()
    d = pd.read_csv(args.csv)
    speed_panels(d, args.csv.replace(".csv", ".png"))
    if args.rows:
        rows = pd.concat([pd.read_csv(f) for f in args.rows], ignore_index=True)
        rows = rows[rows.checkpoint.fillna("").str.contains(args.checkpoint, regex=False)]
        if rows.checkpoint.nunique() != 1:
            raise SystemExit(f"--rows hold {rows.checkpoint.nunique()} networks after --checkpoint: name one")
        points = accuracy_points(d, rows, args.calibration)
        print(points[["runtime", "net", "ratio", "ratio_min", "ratio_max", "A_rob"]].to_string(index=False))
        accuracy_plot(points, args.csv.replace(".csv", "_accuracy.png"), args.title)


if __name__ == "__main__":
    main()
