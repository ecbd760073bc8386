"""Text forms of a side-by-side table (from ``match.side_by_side``): Markdown and LaTeX, ours / paper."""
from __future__ import annotations

import math
import numbers

import pandas as pd

# (column, header, digits) of the compared cells: the paper's precision (FPS are integers there).
CELLS = (("A_nat", "A_nat %", 2), ("A_rob", "A_rob %", 2), ("size_MB", "size MB", 1), ("fps", "FPS", 0),
         ("fps_ratio", "FPS ratio", 2))
NOTE = ("FPS ratio = FPS / FPS of the dense model (for ours: our dense run of that model "
        "on the same device and scale, from the same table when it has one; for the paper: its dense row of that "
        "model, all timed on a Jetson Xavier). Absolute FPS only compare on one device. A dash: not run yet.")
# The column of our A_rob under another attack than the table's main one (match.side_by_side's other_ columns).
OTHER_HEADER = "A_rob % other attack"
OTHER_NOTE = (f"{OTHER_HEADER} (ours): our newest run of that row under another attack than the A_rob column's "
              "(its attack, images evaluated; run id).")


def fmt(value: object, digits: int = 2) -> str:
    """Cell text: numbers rounded to ``digits``, integers as they are, missing values as '-'."""
    if isinstance(value, str):
        return value or "-"
    if isinstance(value, bool) or isinstance(value, numbers.Integral):  # numpy integers too (pandas columns)
        return str(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``df`` (cells through ``fmt``; no extra dependency)."""
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def attack_name(spec: str) -> str:
    """The short name of an attack spec as ``EvalAttack.spec`` writes it ('pgd20-step2/255-eps8/255-rs' -> 'pgd20',
    'autoattack-standard-Linf-eps8/255' -> 'autoattack'); '?' where the run recorded none."""
    return spec.split("-")[0] or "?"


def attack_note(side: pd.DataFrame) -> str:
    """What our A_rob column is: the table's main attack and the images it ran on ('' when nothing was run)."""
    n_eval = sorted({n for n in side.n_eval if n != "" and pd.notna(n)})
    if not n_eval:
        return ""
    images = ", ".join(fmt(n, 0) for n in n_eval)
    return f"A_rob (ours): {side.attack.iloc[0] or 'attack not recorded'} on {images} images."


def run_ids(side: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """A short id per run, numbered ('r1', ...) in row order: the ids of the rows' main runs and of their runs
    under another attack ('other_' columns; '' where a row has none), and one footnote per id saying which run
    it is and, when several runs matched the row, that the newest was taken."""
    ids: dict[str, list[str]] = {"": [], "other_": []}
    notes, seen = [], {}
    for r in side.to_dict("records"):
        for prefix, out in ids.items():
            run_dir, run_time, attack = r[f"{prefix}run_dir"], r[f"{prefix}run_time"], r[f"{prefix}attack"]
            if not run_time and not run_dir:
                out.append("")
                continue
            key = run_dir or run_time
            if key not in seen:
                seen[key] = f"r{len(seen) + 1}"
                n = r[f"{prefix}n_candidates"]
                extra = f"; newest of {n} matching runs" if n > 1 else ""
                notes.append(f"{seen[key]}: {run_dir or '(no run_dir)'} ({run_time}, {r[f'{prefix}device'] or '?'}, "
                             f"scale {r[f'{prefix}scale'] or '?'}, {attack or 'attack not recorded'} on "
                             f"{fmt(r[f'{prefix}n_eval'], 0)} images, commit {r[f'{prefix}git_commit'] or '?'}{extra})")
            out.append(seen[key])
    return ids[""], ids["other_"], notes


Group = tuple[str, tuple[str, ...], list[tuple[str, ...]]]


def _groups(side: pd.DataFrame, other_ids: list[str]) -> list[Group]:
    """The compared columns in order, each as (header, sub-headers, per row its texts): per CELL ours and the
    paper's, and right after A_rob, where a row has a run under another attack, that A_rob with its attack,
    images and run id (ours only)."""
    groups: list[Group] = []
    for col, header, digits in CELLS:
        cells = [(fmt(a, digits), fmt(b, digits)) for a, b in zip(side[col], side[f"{col}_paper"])]
        groups.append((header, ("ours", "paper"), cells))
        if col == "A_rob" and any(other_ids):
            other = zip(side.other_A_rob, side.other_attack, side.other_n_eval, other_ids)
            groups.append((OTHER_HEADER, ("ours",), [(f"{fmt(a)} ({attack_name(k)}, {fmt(n, 0)}; {i})" if i else "-",)
                                                     for a, k, n, i in other]))
    return groups


def _identity(side: pd.DataFrame) -> pd.DataFrame:
    """The columns that name a paper row, as text."""
    models = [m if not ours or ours == m else f"{m} (ours: {ours})" for m, ours in zip(side.model, side.our_model)]
    return pd.DataFrame({"row": side.row.astype(int).astype(str), "model": models, "method": side.method,
                         "beta": [f"{b:g}" if pd.notna(b) else "-" for b in side.beta],
                         "prune": [fmt(p) for p in side.prune_ratio],
                         "GDWS (ours)": [c or "-" for c in side.gdws_constraint]})


def _notes(side: pd.DataFrame, other_ids: list[str]) -> str:
    """The text under a table: the main attack, the other-attack column when there is one, and NOTE."""
    return " ".join(t for t in (attack_note(side), OTHER_NOTE if any(other_ids) else "", NOTE) if t)


def table_markdown(side: pd.DataFrame, title: str) -> str:
    """Markdown document: the table with 'ours / paper' cells, a run id per row, and the runs' footnotes."""
    ids, other_ids, notes = run_ids(side)
    df = _identity(side)
    for header, sub, cells in _groups(side, other_ids):
        df[f"{header} ({' / '.join(sub)})"] = [" / ".join(c) for c in cells]
    df["run"] = [i or "-" for i in ids]
    runs = "\n".join(f"- {n}" for n in notes) or "- none yet"
    return f"# {title}\n\n{markdown(df)}\nEach cell: ours / paper. {_notes(side, other_ids)}\n\nRuns:\n\n{runs}\n"


def _tex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(char, repl)
    return text.replace("-", "--") if text == "-" else text


def table_latex(side: pd.DataFrame, caption: str) -> str:
    """A LaTeX ``table`` (booktabs): ours and paper in adjacent columns, run ids with their footnotes below."""
    ident = _identity(side)
    ids, other_ids, notes = run_ids(side)
    groups = _groups(side, other_ids)
    widths = [len(sub) for _, sub, _ in groups]
    starts = [len(ident.columns) + 1 + sum(widths[:i]) for i in range(len(groups))]
    spec = "l" * len(ident.columns) + "".join("r" * w for w in widths) + "l"
    head1 = " & ".join([""] * len(ident.columns)) + " & " + " & ".join(
        rf"\multicolumn{{{len(sub)}}}{{c}}{{{_tex(h)}}}" for h, sub, _ in groups) + r" & \\"
    rules = " ".join(rf"\cmidrule(lr){{{a}-{a + w - 1}}}" for a, w in zip(starts, widths))
    head2 = " & ".join([*(_tex(c) for c in ident.columns), *(" & ".join(sub) for _, sub, _ in groups), r"run \\"])
    body = []
    for i in range(len(side)):
        cells = [_tex(v) for v in ident.iloc[i]] + [_tex(c) for _, _, rows in groups for c in rows[i]]
        body.append(" & ".join(cells + [ids[i] or "--"]) + r" \\")
    foot = "".join(rf"\\ {_tex(n)}" for n in notes)
    return "\n".join([
        r"% needs \usepackage{booktabs}; written by scripts/make_tables.py", r"\begin{table}[t]", r"\centering",
        r"\scriptsize", rf"\caption{{{_tex(caption)}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule", head1,
        rules, head2, r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
        rf"\par\smallskip\parbox{{\linewidth}}{{\tiny {_tex(_notes(side, other_ids))}{foot}}}", r"\end{table}", ""])
