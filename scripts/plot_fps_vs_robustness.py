"""FPS against robust accuracy (the paper's Figure 1) from results/runs.csv, paper points alongside.

    python scripts/plot_fps_vs_robustness.py [--model vgg16] [--runs results/runs.csv] [--out PNG]

Left panel: our runs of the model (FPS at batch 1 on the device that ran them); right panel: the
paper's rows for the model (Jetson Xavier), when ../shared/paper/cifar10_tables.csv is present.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAPER = ROOT.parent / "shared" / "paper" / "cifar10_tables.csv"
# (marker, colour) per method, the same in both panels.
STYLE = {"dense": ("s", "tab:gray"), "gdws": ("*", "tab:red"), "hydra": ("o", "tab:blue"),
         "hydra+gdws": ("P", "tab:purple"), "admm": ("^", "tab:green"), "admm+gdws": ("X", "tab:olive")}


def _label(method: str, beta: object, ratio: object) -> str:
    """Point label: method with its beta or pruning ratio."""
    parts = [method]
    if pd.notna(ratio) and ratio != "":
        parts.append(f"{float(ratio):.0%}")
    if pd.notna(beta) and beta != "":
        parts.append(f"β={float(beta):g}")
    return " ".join(parts)


def _scatter(ax: plt.Axes, df: pd.DataFrame, beta_col: str, ratio_col: str, title: str) -> None:
    """One panel: a marker per method, each point labelled."""
    for method, rows in df.groupby("method"):
        marker, colour = STYLE.get(method, ("D", "black"))
        ax.scatter(rows.fps, rows.A_rob, marker=marker, color=colour, s=80, label=method)
        for r in rows.itertuples(index=False):
            ax.annotate(_label(method, getattr(r, beta_col), getattr(r, ratio_col)), (r.fps, r.A_rob),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("FPS (batch 1)")
    ax.set_ylabel("robust accuracy A_rob (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def main() -> None:
    """Parse arguments and write the figure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--runs", type=Path, default=ROOT / "results" / "runs.csv")
    parser.add_argument("--paper", type=Path, default=DEFAULT_PAPER)
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--out", type=Path, default=None, help="default results/figures/fps_vs_robustness_<model>.png")
    args = parser.parse_args()
    if not args.runs.is_file():
        raise SystemExit(f"{args.runs} does not exist: run experiments first (bash experiments/table_admm.sh)")
    runs = pd.read_csv(args.runs)
    runs = runs[(runs.model == args.model) & (runs.data == args.data) & runs.fps.notna() & runs.A_rob.notna()]
    if runs.empty:
        raise SystemExit(f"no {args.data} runs of {args.model} with FPS and A_rob in {args.runs}")
    paper = pd.read_csv(args.paper) if args.paper.is_file() else None
    panels = 2 if paper is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    devices = ", ".join(sorted(runs.device.dropna().unique()))
    _scatter(axes[0, 0], runs, "gdws_beta", "prune_ratio", f"ours: {args.model} on {devices}")
    if paper is not None:
        _scatter(axes[0, 1], paper[paper.model == args.model], "beta", "prune_ratio",
                 f"paper: {args.model} on Jetson Xavier")
    out = args.out or ROOT / "results" / "figures" / f"fps_vs_robustness_{args.model}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
