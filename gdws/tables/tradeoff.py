"""Accuracy against MAC ratio for one network, one curve per allocation (LEGO's beta, the network MAC budget,
...) and alpha mode: which way of spending a MAC budget keeps the most accuracy."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from gdws.tables.figures import save_figure
from gdws.tables.match import dense_reference, fps_ratio

#: The GDWS constraint's name -> the allocation it stands for.
ALLOCATIONS = {"beta": "LEGO (beta per layer)", "max_channels": "MEGO (G per layer)",
               "macs_ratio": "network MAC budget", "speedup": "network latency budget"}


def tradeoff_runs(runs: pd.DataFrame, experiment: str, model: str | None = None) -> pd.DataFrame:
    """The GDWS runs without pruning of ``experiment`` (and ``model``; default the one with the most runs) under
    the attack most of them used, explicit form only (an implicit run costs dense MACs), newest per
    constraint and variant (alpha mode, calibration set), with ``allocation``, ``variant``, ``mac_ratio`` and
    ``fps_ratio`` columns, sorted by
    MAC ratio. Empty when there is none."""
    rows = runs[(runs.experiment == experiment) & (runs.setting == "gdws") & (runs.gdws_form != "implicit")
                & runs.macs.notna()]
    if model:
        rows = rows[rows.model == model]
    if rows.empty:
        return rows
    model, scale, attack = rows.groupby(["model", "scale", "attack"]).size().idxmax()
    rows = rows[(rows.model == model) & (rows.scale == scale) & (rows.attack == attack)].sort_values("when")
    # a data-aware conversion is its own curve: the alphas plus the calibration set (and Fisher weighting) it used
    calibration = rows.get("gdws_calibration", pd.Series("", index=rows.index)).fillna("").replace("none", "")
    fisher = rows.get("gdws_fisher", pd.Series("", index=rows.index)).astype(str).str.lower().eq("true")
    variant = rows.gdws_alphas.replace("", "none").radd("alphas=") + calibration.where(
        calibration == "", ", calibration=" + calibration + fisher.map({True: " + Fisher", False: ""}))
    rows = rows.assign(variant=variant).drop_duplicates(["gdws_constraint", "variant"], keep="last")
    kind = rows.gdws_constraint.str.partition("=")[0].str.strip()
    return rows.assign(allocation=kind.map(ALLOCATIONS).fillna(kind),
                       mac_ratio=rows.macs_dense / rows.macs,
                       fps_ratio=[fps_ratio(runs, r)[0] for _, r in rows.iterrows()]).sort_values("mac_ratio")


def plot_tradeoff(runs: pd.DataFrame, out_dir: Path, experiment: str, model: str | None = None) -> Path | None:
    """Write ``tradeoff_<experiment>_<model>.png`` to ``out_dir`` (None when fewer than two GDWS runs): left,
    A_nat (dashed) and A_rob (solid) against the MAC ratio, one colour per (allocation, alphas), the dense
    network at ratio 1; right, the FPS ratio (GDWS over dense) against the MAC ratio."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    rows = tradeoff_runs(runs, experiment, model)
    if len(rows) < 2:
        return None
    mdl = rows.model.iloc[0]
    dense = dense_reference(runs, rows.iloc[0])
    fig, (acc, speed) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, ((allocation, variant), sub) in enumerate(rows.groupby(["allocation", "variant"])):
        label, colour = f"{allocation}, {variant}", f"C{i}"
        x = [1.0, *sub.mac_ratio] if dense is not None else list(sub.mac_ratio)
        for metric, style in (("A_nat", "o--"), ("A_rob", "s-")):
            y = [dense[metric], *sub[metric]] if dense is not None else list(sub[metric])
            acc.plot(x, y, style, color=colour, label=f"{metric}: {label}", ms=4)
        speed.plot(sub.mac_ratio, sub.fps_ratio, "^-", color=colour, label=label, ms=4)
    lim = max(rows.mac_ratio.max(), rows.fps_ratio.max()) * 1.05
    speed.plot([1, lim], [1, lim], color="gray", ls=":", lw=1, label="FPS ratio = MAC ratio")
    acc.set_ylabel("accuracy (%)")
    speed.set_ylabel("GDWS FPS / dense FPS")
    for ax in (acc, speed):
        ax.set_xlabel("MAC ratio (dense MACs / GDWS MACs)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"{mdl} in experiment {experiment}: accuracy and FPS against MACs removed "
                 f"(n_eval {rows.n_eval.max():g}, {rows.attack.iloc[0]}; FPS on {rows.device.iloc[0]})", fontsize=9)
    return save_figure(fig, Path(out_dir) / f"tradeoff_{experiment}_{mdl}.png")
