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


def run_ids(side: pd.DataFrame) -> tuple[list[str], list[str]]:
    """A short id per row ('r1', ... in row order, '' when not run) and one footnote per id saying which run
    it is and, when several runs matched the row, that the newest was taken."""
    ids, notes, seen = [], [], {}
    for r in side.itertuples(index=False):
        if not r.run_time and not r.run_dir:
            ids.append("")
            continue
        key = r.run_dir or r.run_time
        if key not in seen:
            seen[key] = f"r{len(seen) + 1}"
            extra = f"; newest of {r.n_candidates} matching runs" if r.n_candidates > 1 else ""
            notes.append(f"{seen[key]}: {r.run_dir or '(no run_dir)'} ({r.run_time}, {r.device or '?'}, scale "
                         f"{r.scale or '?'}, n_eval {fmt(r.n_eval, 0)}, commit {r.git_commit or '?'}{extra})")
        ids.append(seen[key])
    return ids, notes


def _identity(side: pd.DataFrame) -> pd.DataFrame:
    """The columns that name a paper row, as text."""
    return pd.DataFrame({"row": side.row.astype(int).astype(str), "model": side.model, "method": side.method,
                         "beta": [f"{b:g}" if pd.notna(b) else "-" for b in side.beta],
                         "prune": [fmt(p) for p in side.prune_ratio],
                         "GDWS (ours)": [c or "-" for c in side.gdws_constraint]})


def table_markdown(side: pd.DataFrame, title: str) -> str:
    """Markdown document: the table with 'ours / paper' cells, a run id per row, and the runs' footnotes."""
    df = _identity(side)
    for col, header, digits in CELLS:
        df[f"{header} (ours / paper)"] = [f"{fmt(a, digits)} / {fmt(b, digits)}"
                                          for a, b in zip(side[col], side[f"{col}_paper"])]
    ids, notes = run_ids(side)
    df["run"] = [i or "-" for i in ids]
    runs = "\n".join(f"- {n}" for n in notes) or "- none yet"
    return f"# {title}\n\n{markdown(df)}\nEach cell: ours / paper. {NOTE}\n\nRuns:\n\n{runs}\n"


def _tex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(char, repl)
    return text.replace("-", "--") if text == "-" else text


def table_latex(side: pd.DataFrame, caption: str) -> str:
    """A LaTeX ``table`` (booktabs): ours and paper in adjacent columns, run ids with their footnotes below."""
    ident = _identity(side)
    ids, notes = run_ids(side)
    n_id = len(ident.columns)
    spec = "l" * n_id + "rr" * len(CELLS) + "l"
    head1 = " & ".join([""] * n_id) + " & " + " & ".join(
        rf"\multicolumn{{2}}{{c}}{{{_tex(h)}}}" for _, h, _ in CELLS) + r" & \\"
    rules = " ".join(rf"\cmidrule(lr){{{n_id + 2 * i + 1}-{n_id + 2 * i + 2}}}" for i in range(len(CELLS)))
    head2 = " & ".join([*(_tex(c) for c in ident.columns), *["ours & paper"] * len(CELLS), r"run \\"])
    body = []
    for i, r in enumerate(side.itertuples(index=False)):
        cells = [_tex(v) for v in ident.iloc[i]]
        for col, _, digits in CELLS:
            cells += [_tex(fmt(getattr(r, col), digits)), _tex(fmt(getattr(r, f"{col}_paper"), digits))]
        body.append(" & ".join(cells + [ids[i] or "--"]) + r" \\")
    foot = "".join(rf"\\ {_tex(n)}" for n in notes)
    return "\n".join([
        r"% needs \usepackage{booktabs}; written by scripts/make_tables.py", r"\begin{table}[t]", r"\centering",
        r"\scriptsize", rf"\caption{{{_tex(caption)}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule", head1,
        rules, head2, r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
        rf"\par\smallskip\parbox{{\linewidth}}{{\tiny {_tex(NOTE)}{foot}}}", r"\end{table}", ""])
