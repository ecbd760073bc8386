"""Plot of scripts/bench_runtime.py's CSV: dense / GDWS speed ratio per runtime against the MAC ratio (the physical
limit, the diagonal), one panel per (threads, batch), with the min-max spread over the interleaved rounds.

    python scripts/bench_runtime_plot.py results/perf/bench_runtime_vgg16_w0.5.csv
"""
from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def main(path: str) -> None:
    """Write PATH with .png instead of .csv."""
    d = pd.read_csv(path)
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
    fig.savefig(path.replace(".csv", ".png"), dpi=110)


if __name__ == "__main__":
    main(sys.argv[1])
