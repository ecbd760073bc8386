"""Pair each row of the paper's tables with our newest matching run of one scale, and its FPS with its dense
network's."""
from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("A_nat", "A_rob", "size_MB", "fps")
#: The scales a paper table is filled from, first choice first: the closest to the paper's setting. Other labels
#: (custom, ...) come after cpu, then smoke, then rows that recorded no scale.
SCALE_ORDER = ("paper", "cpu")
#: Where one of our cells came from, per row of a side-by-side table.
RUN_COLUMNS = ("run_dir", "time", "device", "scale", "n_eval", "git_commit")


def same_number(a: object, b: object) -> bool:
    """Equal as floats (0.9 == 0.90), or both missing."""
    x, y = pd.to_numeric(pd.Series([a, b]), errors="coerce")
    return bool((np.isnan(x) and np.isnan(y)) or (not np.isnan(x) and not np.isnan(y) and abs(x - y) < 1e-9))


def _where(df: pd.DataFrame, values: pd.Series, target: object) -> pd.DataFrame:
    """The rows of ``df`` whose ``values`` equal ``target`` as numbers (see ``same_number``)."""
    return df.loc[np.array([same_number(v, target) for v in values], dtype=bool)]


def candidates(runs: pd.DataFrame, paper_row: pd.Series) -> pd.DataFrame:
    """Our runs that stand for ``paper_row``, newest first. A run that names its paper row (``paper_row``
    column) matches that row of its table only; any other run matches by what it ran: same table, model,
    method (as requested) and pruning ratio, and the same beta where the paper gives one (where it does
    not, any GDWS constraint)."""
    named = runs.paper_row.notna()
    by_name = runs[named & (runs.table == paper_row.table) & (runs.paper_row == paper_row.row)]
    cand = runs[~named & (runs.table == paper_row.table) & (runs.model == paper_row.model)
                & (runs.setting == paper_row.method)]
    cand = _where(cand, cand.prune_ratio, paper_row.prune_ratio)
    if pd.notna(paper_row.beta):
        cand = _where(cand, cand.beta, paper_row.beta)
    return pd.concat([by_name, cand]).sort_values("when", ascending=False, na_position="last")


def _scale_rank(scale: str) -> tuple[int, str]:
    """Sort key of a scale label: those of SCALE_ORDER first, then other labels, then smoke, then none."""
    if scale in SCALE_ORDER:
        return SCALE_ORDER.index(scale), scale
    return len(SCALE_ORDER) + {"smoke": 1, "": 2}.get(scale, 0), scale


def table_scales(runs: pd.DataFrame, table: str) -> list[str]:
    """The scales of our runs of paper table ``table``, in the order a table is filled from (SCALE_ORDER)."""
    return sorted(set(runs.scale[runs.table == table]), key=_scale_rank)


def dense_reference(runs: pd.DataFrame, run: pd.Series) -> pd.Series | None:
    """The dense run whose FPS ``run``'s FPS is divided by: same model, width, data, scale and device (FPS
    only compares on one device); among those, one of the same table, then the same experiment, then the
    newest. None when there is none."""
    cand = runs[(runs.setting == "dense") & (runs.model == run.model) & (runs.data == run.data)
                & (runs.scale == run.scale) & (runs.device == run.device) & runs.fps.notna()]
    cand = _where(cand, cand.width, run.width)
    if cand.empty:
        return None
    key = pd.DataFrame({"table": cand.table == run.table, "experiment": cand.experiment == run.experiment,
                        "when": cand.when})
    return cand.loc[key.sort_values(["table", "experiment", "when"], na_position="first").index[-1]]


def fps_ratio(runs: pd.DataFrame, run: pd.Series) -> tuple[float, str]:
    """``run``'s FPS over its dense network's, and the run folder the dense FPS came from.

    Where the run timed its dense original beside itself (``fps_dense``, one process under one load) that
    ratio is used; otherwise the FPS of the dense reference run (``dense_reference``). NaN and '' when neither
    exists."""
    if pd.notna(run.get("fps_dense")):
        return float(run.fps / run.fps_dense), str(run.run_dir)
    ref = dense_reference(runs, run)
    return (float(run.fps / ref.fps), str(ref.run_dir)) if ref is not None else (np.nan, "")


def paper_dense_fps(paper: pd.DataFrame, paper_row: pd.Series) -> float:
    """FPS of the paper's dense row of the same model: in the same table, else in another table (all the
    paper's FPS come from one device). NaN when the paper has no dense row of that model."""
    dense = paper[(paper.model == paper_row.model) & (paper.method == "dense")]
    dense = dense.assign(same=dense.table == paper_row.table).sort_values("same", ascending=False)
    return float(dense.fps.iloc[0]) if len(dense) else np.nan


def main_attack(runs: pd.DataFrame, table: str) -> str:
    """The attack (``attack`` spec, '' where not recorded) of most of our runs of paper table ``table`` in
    ``runs``; on a tie, that of the newest of them. '' when the table has no run."""
    rows = runs[runs.table == table]
    if rows.empty:
        return ""
    counts = rows.attack.value_counts()
    tied = rows[rows.attack.isin(counts.index[counts == counts.max()])]
    return str(tied.sort_values("when", ascending=False, na_position="last").attack.iloc[0])


def _run_cells(run: pd.Series | None, n_candidates: int, prefix: str = "") -> dict[str, object]:
    """Where a cell's run came from (RUN_COLUMNS, ``time`` as ``run_time``), keys prefixed; '' when no run."""
    cells = {f"{prefix}run_time" if c == "time" else prefix + c: run[c] if run is not None else "" for c in RUN_COLUMNS}
    return {f"{prefix}n_candidates": n_candidates, **cells}


def side_by_side(runs: pd.DataFrame, paper: pd.DataFrame, table: str) -> pd.DataFrame:
    """One paper table, a row per paper row: the paper's values (``<metric>_paper``), ours (``<metric>``,
    NaN where not run), FPS ratios to the dense model, and the run each of our values came from
    (``run_dir``, ``run_time``, ``n_candidates``: how many runs matched, the newest being used).

    Our values all come from runs of one scale, the first of ``table_scales`` (filter ``runs`` by scale for
    another): a newer run at another scale never replaces a cell, so a table never mixes scales. Within that
    scale they all come from runs of the table's main attack (``attack``, see ``main_attack``), so that one
    A_rob column never mixes attacks; the newest matching run with an A_rob under another attack, if any, gives
    only ``other_A_rob``, ``other_attack`` and its provenance (``other_run_dir``, ``other_n_eval``, ...)."""
    scales = table_scales(runs, table)
    runs = runs[runs.scale == scales[0]] if scales else runs
    attack = main_attack(runs, table)
    main, others = runs[runs.attack == attack], runs[(runs.attack != attack) & runs.A_rob.notna()]
    out = []
    for _, p in paper[paper.table == table].iterrows():
        cand, rivals = candidates(main, p), candidates(others, p)
        ours = cand.iloc[0] if len(cand) else None
        other = rivals.iloc[0] if len(rivals) else None
        ratio, dense_dir = fps_ratio(main, ours) if ours is not None else (np.nan, "")
        row = {k: p[k] for k in ("table", "row", "model", "method", "beta", "prune_ratio")}
        row["gdws_constraint"] = ours.gdws_constraint if ours is not None else ""
        row["our_model"] = ours.model if ours is not None else ""  # a scale may stand in another architecture
        for m in METRICS:
            row[m] = ours[m] if ours is not None else np.nan
            row[f"{m}_paper"] = p[m]
        row["fps_ratio"] = ratio
        row["fps_ratio_paper"] = p.fps / paper_dense_fps(paper, p)
        row["attack"] = attack
        row.update(_run_cells(ours, len(cand)))
        row["dense_run_dir"] = dense_dir
        row["other_A_rob"] = other.A_rob if other is not None else np.nan
        row["other_attack"] = other.attack if other is not None else ""
        row.update(_run_cells(other, len(rivals), "other_"))
        out.append(row)
    return pd.DataFrame(out)
