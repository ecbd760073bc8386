"""A beta sweep of one model in one experiment: accuracy, MAC ratio and FPS ratio against LEGO's beta."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gdws.tables.figures import save_figure
from gdws.tables.match import dense_reference, fps_ratio


def sweep_runs(runs: pd.DataFrame, experiment: str | None = None, model: str | None = None) -> pd.DataFrame:
    """The beta-constrained GDWS runs (no pruning) of one experiment, model, scale and attack, newest per (alphas,
    beta), with ``mac_ratio`` and ``fps_ratio`` to the dense model. Unless given, the experiment and model
    are those with the most distinct betas (and so are the scale and attack). Empty when there is no such run."""
    rows = runs[(runs.setting == "gdws") & runs.beta.notna()]
    if experiment:
        rows = rows[rows.experiment == experiment]
    if model:
        rows = rows[rows.model == model]
    if rows.empty:
        return rows
    # one attack: A_rob under PGD and under AutoAttack do not belong on one curve
    experiment, model, scale, attack = rows.groupby(["experiment", "model", "scale", "attack"]).beta.nunique().idxmax()
    rows = rows[(rows.experiment == experiment) & (rows.model == model) & (rows.scale == scale)
                & (rows.attack == attack)].sort_values("when")
    rows = rows.drop_duplicates(["gdws_alphas", "beta"], keep="last").sort_values("beta")
    refs = [dense_reference(runs, r) for _, r in rows.iterrows()]
    return rows.assign(mac_ratio=rows.macs_dense / rows.macs,
                       fps_ratio=[fps_ratio(runs, r)[0] for _, r in rows.iterrows()],
                       dense_A_nat=[d.A_nat if d is not None else np.nan for d in refs],
                       dense_A_rob=[d.A_rob if d is not None else np.nan for d in refs])


def plot_beta_sweep(runs: pd.DataFrame, out_dir: Path, experiment: str | None = None,
                    model: str | None = None) -> Path | None:
    """Write ``beta_sweep_<experiment>_<model>.png`` to ``out_dir`` (None when there is nothing to sweep):
    left, A_nat and A_rob against beta with the dense model's as dotted lines; right, MAC and FPS ratios.
    One colour per alpha mode, since the same beta bounds a differently weighted error under each."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    rows = sweep_runs(runs, experiment, model)
    if rows.empty:
        return None
    exp, mdl = rows.experiment.iloc[0], rows.model.iloc[0]
    fig, (acc, speed) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (alphas, sub) in enumerate(rows.groupby(rows.gdws_alphas.replace("", "none"))):
        colour = f"C{i}"
        acc.plot(sub.beta, sub.A_nat, "o--", color=colour, label=f"A_nat (alphas={alphas})")
        acc.plot(sub.beta, sub.A_rob, "s-", color=colour, label=f"A_rob (alphas={alphas})")
        speed.plot(sub.beta, sub.mac_ratio, "o--", color=colour, label=f"MAC ratio (alphas={alphas})")
        speed.plot(sub.beta, sub.fps_ratio, "^-", color=colour, label=f"FPS ratio (alphas={alphas})")
    for value, name in ((rows.dense_A_nat.dropna(), "A_nat"), (rows.dense_A_rob.dropna(), "A_rob")):
        if len(value):
            acc.axhline(value.iloc[-1], color="gray", ls=":", lw=1)
            acc.annotate(f"dense {name}", (rows.beta.max(), value.iloc[-1]), fontsize=7, color="gray",
                         textcoords="offset points", xytext=(0, 3), ha="right")
    speed.axhline(1.0, color="gray", ls=":", lw=1)
    acc.set_ylabel("accuracy (%)")
    speed.set_ylabel("dense / GDWS MACs;  GDWS / dense FPS")
    for ax in (acc, speed):
        ax.set_xscale("log")
        ax.set_xlabel("beta (LEGO error bound per layer)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    devices = ", ".join(sorted(d for d in rows.device.unique() if d))
    fig.suptitle(f"beta sweep: {mdl} in experiment {exp} (n_eval {rows.n_eval.max():g}; FPS on {devices})",
                 fontsize=10)
    return save_figure(fig, Path(out_dir) / f"beta_sweep_{exp}_{mdl}.png")
