"""The paper's Figure 1 regenerated: robust accuracy against speed-up over dense AT for VGG-16, for the
paper's table rows and our runs in one panel (x is the FPS ratio, as absolute FPS only compare on one device)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from gdws.tables.data import load_paper
from gdws.tables.figures import save_figure
from gdws.tables.match import fps_ratio, paper_dense_fps

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# method -> (marker, colour, legend name); Figure 1 draws AT and AT + GDWS as diamonds.
STYLE = {"dense": ("D", "black", "AT (dense)"), "gdws": ("D", "tab:red", "AT + GDWS"),
         "hydra": ("v", "tab:blue", "HYDRA"), "hydra+gdws": ("P", "tab:purple", "HYDRA + GDWS"),
         "admm": ("o", "tab:green", "ADMM"), "admm+gdws": ("X", "tab:olive", "ADMM + GDWS")}


def point_label(setting: str, beta: float, prune_ratio: float, constraint: str = "") -> str:
    """What distinguishes a point of its series: pruning ratio and/or the GDWS constraint ('' for dense)."""
    parts = [f"{prune_ratio:.0%}"] if pd.notna(prune_ratio) else []
    if "gdws" in setting:
        parts += [f"β={beta:g}"] if pd.notna(beta) else [constraint]
    return " ".join(p for p in parts if p)


def paper_points(paper: pd.DataFrame, models: tuple[str, ...]) -> pd.DataFrame:
    """The paper's rows of ``models``, one series group per (table, model) that has a dense row: the
    "lightweight" table's GDWS rows come from other trainings than the dense rows of other tables."""
    rows = paper[paper.model.isin(models)]
    with_dense = rows[rows.method == "dense"][["table", "model"]]
    rows = rows.merge(with_dense, on=["table", "model"])
    return pd.DataFrame({
        "group": rows.table + " " + rows.model, "name": "paper: " + rows.model, "setting": rows.method,
        "y": rows.A_rob,
        "x": [r.fps / paper_dense_fps(paper, r) for _, r in rows.iterrows()],
        "label": [point_label(r.method, r.beta, r.prune_ratio) for _, r in rows.iterrows()]})


def our_points(runs: pd.DataFrame, models: tuple[str, ...]) -> pd.DataFrame:
    """Our newest run per setting of ``models``, one group per (model, width, scale, device) (``where``
    names the last two); x is the FPS ratio to the dense network (`fps_ratio`), NaN where none was timed."""
    rows = runs[runs.model.isin(models) & runs.fps.notna() & runs.A_rob.notna()].sort_values("when")
    rows = rows.drop_duplicates(["model", "width", "scale", "device", "setting", "gdws_constraint", "prune_ratio"],
                                keep="last")
    return pd.DataFrame({
        "group": [f"{r.model} {r.width} {r.scale} {r.device}" for _, r in rows.iterrows()],
        "name": [f"ours: {r.model} w{r.width:g}" for _, r in rows.iterrows()],
        "where": [", ".join(filter(None, (r.scale, r.device))) for _, r in rows.iterrows()],
        "setting": rows.setting, "y": rows.A_rob,
        "x": [fps_ratio(runs, r)[0] for _, r in rows.iterrows()],
        "label": [point_label(r.setting, r.beta, r.prune_ratio, r.gdws_constraint) for _, r in rows.iterrows()]})


def _draw_group(ax: Axes, points: pd.DataFrame, ours: bool) -> None:
    """One group: each method's points joined by a line that starts at the group's dense point."""
    dense = points[points.setting == "dense"]
    for setting, rows in points.groupby("setting"):
        marker, colour, _ = STYLE.get(setting, ("s", "gray", setting))
        line = pd.concat([dense, rows.sort_values("x")]) if setting != "dense" else rows
        ax.plot(line.x, line.y, "-" if ours else "--", color=colour, lw=1.2 if ours else 0.9, alpha=0.8)
        ax.scatter(rows.x, rows.y, marker=marker, s=60, zorder=3, edgecolors=colour, linewidths=1.5,
                   facecolors=colour if ours else "white")
        for r in rows.itertuples(index=False):
            ax.annotate(r.label, (r.x, r.y), textcoords="offset points", xytext=(5, 3), fontsize=7, color=colour)
    for r in dense.itertuples(index=False):  # left of x = 1, where no method's points lie
        ax.annotate(points["name"].iloc[0], (r.x, r.y), textcoords="offset points", xytext=(-7, 2), fontsize=7,
                    ha="right")


def plot_figure1(runs: pd.DataFrame, out: Path, models: tuple[str, ...] = ("vgg16", "vgg16_hydra"),
                 paper: pd.DataFrame | None = None) -> Path:
    """Write the Figure-1-style PNG to ``out``: A_rob against FPS ratio to dense AT; paper points hollow with
    dashed lines (Jetson Xavier), ours filled with solid lines (the device that ran them)."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    paper = load_paper() if paper is None else paper
    theirs, ours = paper_points(paper, models), our_points(runs, models)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for _, points in theirs.groupby("group"):
        _draw_group(ax, points, ours=False)
    for _, points in ours[ours.x.notna()].groupby("group"):
        _draw_group(ax, points, ours=True)
    missing = "" if ours.x.notna().any() else f"no runs of ours yet for {', '.join(models)}"
    ax.text(0.98, 0.02, missing, transform=ax.transAxes, ha="right", fontsize=8, color="gray")
    where = "; ".join(sorted(w for w in ours["where"].unique() if w))
    handles = [Line2D([], [], marker=m, color=c, ls="", label=name) for m, c, name in STYLE.values()]
    handles += [Line2D([], [], marker="o", color="gray", mfc="white", ls="--", label="paper (Jetson Xavier)"),
                Line2D([], [], marker="o", color="gray", ls="-", label=f"ours ({where})" if where else "ours")]
    ax.legend(handles=handles, fontsize=7, ncol=2, loc="best")
    ax.axvline(1.0, color="gray", lw=0.5)
    ax.set_xlim(left=0)  # room for the dense points' names
    ax.set_xlabel("FPS / FPS of the dense (AT) model on the same device")
    ax.set_ylabel("robust accuracy A_rob (%)")
    ax.set_title(f"{' / '.join(models)} on CIFAR-10: robustness against speed-up", fontsize=10)
    ax.grid(alpha=0.3)
    return save_figure(fig, Path(out))
