"""gdws.tables and scripts/make_tables.py: the paper's tables regenerated from a synthetic runs CSV."""
from __future__ import annotations

import csv
import math
import runpy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gdws.tables import load_paper, load_runs, write_paper_tables

REPO = Path(__file__).resolve().parents[1]
NEW = ("time", "table", "paper_row", "scale", "experiment", "model", "width", "data", "method", "prune_method",
       "prune_ratio", "gdws_constraint", "gdws_alphas", "A_nat", "A_rob", "size_MB", "macs", "macs_dense", "fps",
       "device", "n_eval", "run_dir")
# Rows written before the table/scale/gdws_constraint columns existed.
OLD = ("time", "experiment", "model", "width", "data", "method", "prune_method", "prune_ratio", "gdws_beta",
       "gdws_budget", "gdws_alphas", "A_nat", "A_rob", "size_MB", "macs", "macs_dense", "fps", "device", "n_eval",
       "run_dir")


def _run(hour: int, **kw: object) -> dict[str, object]:
    """A run row on device 'gpu A' at scale 'cpu', ``hour`` o'clock, with ``kw`` overriding."""
    row = {"time": f"2026-01-01T{hour:02d}:00:00+00:00", "scale": "cpu", "width": 1.0, "data": "cifar10",
           "A_nat": 70.0, "A_rob": 40.0, "size_MB": 50.0, "macs": 100, "macs_dense": 100, "fps": 100.0,
           "device": "gpu A", "n_eval": 500, "run_dir": f"outputs/run{hour}"}
    row.update(kw)
    return row


def _write(path: Path, columns: tuple[str, ...], rows: list[dict[str, object]]) -> Path:
    """``rows`` as a CSV with ``columns`` (missing cells empty)."""
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def runs_csvs(tmp_path: Path) -> list[Path]:
    """A new-style CSV (table experiments, an own experiment) and an old-style one (table from experiment)."""
    admm = {"table": "admm", "experiment": "table_admm"}
    new = [
        _run(1, **admm, model="vgg16", method="dense"),
        _run(2, **admm, model="vgg16", method="gdws", gdws_constraint="beta=0.5", A_rob=39.0, fps=250.0),
        _run(3, **admm, model="vgg16", method="gdws", gdws_constraint="beta=0.50", A_rob=39.5, fps=260.0),
        _run(4, **admm, model="vgg16", method="gdws", gdws_constraint="beta=0.75", A_rob=30.0),
        _run(5, **admm, model="preact_resnet18", method="admm", prune_method="admm", prune_ratio=0.5, A_nat=61.25),
        # GDWS that replaced no layer: labelled dense by the pipeline, still the paper's GDWS row.
        _run(6, **admm, model="preact_resnet18", method="dense", gdws_constraint="beta=0.75", A_rob=33.3),
        _run(7, table="lightweight", experiment="table_lightweight", model="vgg16", method="gdws",
             gdws_constraint="beta=0.005", fps=300.0),
        # A run naming its paper row matches it whatever its model is called.
        _run(13, table="lightweight", paper_row=6, experiment="table_lightweight", model="resnet20_w40",
             method="dense", A_rob=45.5),
        _run(8, table="hydra", experiment="table_hydra", model="vgg16_hydra", method="hydra+gdws",
             prune_method="hydra", prune_ratio=0.9, gdws_constraint="beta=0.1", A_rob=44.4),
        # Newer and faster, but on another device: never the FPS reference of 'gpu A' runs.
        _run(9, experiment="mine", model="vgg16", method="dense", device="cpu B", fps=1000.0),
        _run(10, experiment="mine", model="vgg16", method="gdws", gdws_constraint="beta=2", macs=50,
             device="cpu B", fps=1500.0),
    ]
    old = [_run(11, experiment="table_robnet", model="wrn28_4", method="dense", fps=20.0),
           _run(12, experiment="table_robnet", model="wrn28_4", method="gdws", gdws_beta=0.005, fps=50.0)]
    return [_write(tmp_path / "new.csv", NEW, new), _write(tmp_path / "old.csv", OLD, old)]


def _row(sides: dict[str, pd.DataFrame], table: str, number: int) -> pd.Series:
    """Paper row ``number`` of ``table`` in the rendered frames."""
    side = sides[table]
    return side[side.row == number].iloc[0]


def test_paper_data_ships_with_the_package():
    paper = load_paper()
    assert len(paper) == 29 and list(paper.table.unique()) == ["hydra", "admm", "lightweight", "robnet"]


def test_every_paper_row_rendered_with_ours_where_run(tmp_path, runs_csvs):
    sides = write_paper_tables(load_runs(runs_csvs), tmp_path / "out")
    assert sum(len(s) for s in sides.values()) == 29
    for table, side in sides.items():
        assert len(pd.read_csv(tmp_path / "out" / f"{table}.csv")) == len(side)
    run = {(t, int(r)) for t, s in sides.items() for r in s.row[s.A_rob.notna()]}
    assert run == {("admm", 1), ("admm", 2), ("admm", 7), ("admm", 9), ("lightweight", 2), ("hydra", 4),
                   ("lightweight", 6), ("robnet", 4), ("robnet", 5)}
    assert _row(sides, "admm", 9).A_nat == 61.25  # prune ratio 0.5 matches the paper's 0.50
    assert _row(sides, "admm", 7).A_rob == 33.3   # GDWS asked for, whatever layers it replaced
    assert _row(sides, "hydra", 4).A_rob == 44.4


def test_newest_matching_run_wins_and_says_so(tmp_path, runs_csvs):
    sides = write_paper_tables(load_runs(runs_csvs), tmp_path)
    row = _row(sides, "admm", 2)
    assert row.A_rob == 39.5 and row.n_candidates == 2 and row.run_dir == "outputs/run3"
    md = (tmp_path / "admm.md").read_text()
    assert "outputs/run3" in md and "newest of 2" in md and "outputs/run2 " not in md


def test_fps_ratio_to_the_dense_run_on_the_same_device(tmp_path, runs_csvs):
    sides = write_paper_tables(load_runs(runs_csvs), tmp_path)
    assert _row(sides, "admm", 1).fps_ratio == pytest.approx(1.0)
    assert _row(sides, "admm", 2).fps_ratio == pytest.approx(2.6)
    assert _row(sides, "lightweight", 2).fps_ratio == pytest.approx(3.0)  # dense row from table admm
    assert _row(sides, "robnet", 5).fps_ratio == pytest.approx(2.5)
    assert math.isnan(_row(sides, "admm", 9).fps_ratio)  # no dense preact_resnet18 run
    assert _row(sides, "admm", 2).fps_ratio_paper == pytest.approx(119 / 36)
    assert _row(sides, "lightweight", 1).fps_ratio_paper == pytest.approx(104 / 28)  # paper's dense: table admm


def test_fps_ratio_timed_side_by_side_in_the_run_wins_over_a_dense_run(tmp_path):
    # The dense run (fps 100) was timed alone under another load; the GDWS run timed its dense original
    # beside itself (fps_dense 80): its own ratio 260 / 80 is the one reported, and its folder named.
    admm = {"table": "admm", "experiment": "table_admm", "model": "vgg16"}
    rows = [_run(1, **admm, method="dense"),
            _run(2, **admm, method="gdws", gdws_constraint="beta=0.5", fps=260.0, fps_dense=80.0)]
    sides = write_paper_tables(load_runs([_write(tmp_path / "runs.csv", NEW + ("fps_dense",), rows)]), tmp_path)
    row = _row(sides, "admm", 2)
    assert row.fps_ratio == pytest.approx(3.25) and row.dense_run_dir == "outputs/run2"
    assert _row(sides, "admm", 1).fps_ratio == pytest.approx(1.0)  # the dense row, against itself


PGD20 = "pgd20-step2/255-eps8/255-rs"
AA = "autoattack-standard-Linf-eps8/255"


def test_a_rob_column_keeps_the_main_attack_and_another_attack_gets_its_own_column(tmp_path):
    # Most runs under PGD-20 on 1017 images; newer AutoAttack runs (300 images, no FPS) of rows 1 and 4 must not
    # replace their PGD cells (A_rob or FPS) but show in their own column.
    admm = {"table": "admm", "experiment": "table_admm", "model": "vgg16", "attack": PGD20, "n_eval": 1017}
    aa = {**admm, "attack": AA, "n_eval": 300, "fps": None}
    rows = [_run(1, **admm, method="dense"),
            _run(2, **admm, method="gdws", gdws_constraint="beta=0.5", A_rob=39.0, fps=250.0),
            _run(3, **admm, method="admm", prune_method="admm", prune_ratio=0.5, A_rob=27.34, fps=206.0),
            _run(4, **aa, method="dense", A_rob=29.3333),
            _run(5, **aa, method="admm", prune_method="admm", prune_ratio=0.5, A_rob=24.6667)]
    sides = write_paper_tables(load_runs([_write(tmp_path / "runs.csv", NEW + ("attack",), rows)]), tmp_path)
    dense, admm4, gdws = _row(sides, "admm", 1), _row(sides, "admm", 4), _row(sides, "admm", 2)
    assert set(sides["admm"].attack) == {PGD20}
    assert (dense.A_rob, dense.fps, dense.run_dir, dense.n_candidates) == (40.0, 100.0, "outputs/run1", 1)
    assert (admm4.A_rob, admm4.fps, admm4.fps_ratio) == (27.34, 206.0, pytest.approx(2.06))
    assert (dense.other_A_rob, dense.other_attack, dense.other_n_eval, dense.other_run_dir) == (
        29.3333, AA, 300, "outputs/run4")
    assert math.isnan(gdws.other_A_rob) and gdws.other_run_dir == ""
    md, tex = (tmp_path / "admm.md").read_text(), (tmp_path / "admm.tex").read_text()
    assert "| A_rob % (ours / paper) | A_rob % other attack (ours) | size MB" in md
    assert "| 40.00 / 45.78 | 29.33 (autoattack, 300; r2) | 50.0 / 56.2 | 100 / 36 |" in md
    assert "| 27.34 / 42.93 | 24.67 (autoattack, 300; r5) |" in md and "| 39.00 / 46.28 | - |" in md
    assert f"A_rob (ours): {PGD20} on 1017 images" in md  # the main attack is named
    assert "r2: outputs/run4 (" in md and f"{AA} on 300 images" in md  # its run has a footnote
    assert "40.00 & 45.78 & 29.33 (autoattack, 300; r2) & 50.0 & 56.2" in tex
    assert r"\multicolumn{1}{c}{A\_rob \% other attack}" in tex and r"\cmidrule(lr){11-11}" in tex


def test_one_attack_no_other_attack_column_and_ties_go_to_the_newest_attack(tmp_path):
    admm = {"table": "admm", "experiment": "table_admm", "model": "vgg16", "attack": PGD20}
    rows = [_run(1, **admm, method="dense"), _run(2, **admm, method="gdws", gdws_constraint="beta=0.5")]
    sides = write_paper_tables(load_runs([_write(tmp_path / "runs.csv", NEW + ("attack",), rows)]), tmp_path)
    md, tex = (tmp_path / "admm.md").read_text(), (tmp_path / "admm.tex").read_text()
    assert "other attack" not in md and "other attack" not in tex and sides["admm"].other_A_rob.isna().all()
    assert f"A_rob (ours): {PGD20} on 500 images" in md
    # one run per attack: the newest run's attack is the table's
    rows[1] = _run(2, **{**admm, "attack": AA}, method="gdws", gdws_constraint="beta=0.5", A_rob=30.0)
    sides = write_paper_tables(load_runs([_write(tmp_path / "tie.csv", NEW + ("attack",), rows)]), tmp_path)
    assert _row(sides, "admm", 2).A_rob == 30.0 and _row(sides, "admm", 1).other_A_rob == 40.0
    assert math.isnan(_row(sides, "admm", 1).A_rob) and set(sides["admm"].attack) == {AA}


def test_a_row_run_on_another_architecture_says_so(tmp_path):
    # scale=cpu runs table hydra's rows on the VGG-16 base instead of the paper's vgg16_hydra
    rows = [_run(1, table="hydra", paper_row=5, experiment="table_hydra", model="vgg16", method="hydra",
                 prune_method="hydra", prune_ratio=0.95, attack=PGD20)]
    write_paper_tables(load_runs([_write(tmp_path / "runs.csv", NEW + ("attack",), rows)]), tmp_path)
    md = (tmp_path / "hydra.md").read_text()
    assert "| 5 | vgg16_hydra (ours: vgg16) | hydra |" in md and "| 1 | vgg16_hydra | dense |" in md


def test_beta_sweep_keeps_one_attack(tmp_path):
    from gdws.tables.sweep import sweep_runs

    mine = {"experiment": "mine", "model": "vgg16", "method": "gdws", "attack": "pgd20"}
    rows = [_run(1, **{**mine, "method": "dense"}),
            *(_run(2 + i, **mine, gdws_constraint=f"beta={b}", macs=m) for i, (b, m) in enumerate(((1, 50), (3, 25), (5, 20)))),
            # newer, under AutoAttack: a point of another curve, not a replacement of the PGD point at beta 5
            _run(9, **{**mine, "attack": "autoattack"}, gdws_constraint="beta=5", A_rob=20.0)]
    runs = load_runs([_write(tmp_path / "runs.csv", NEW + ("attack",), rows)])
    sweep = sweep_runs(runs)
    assert list(sweep.beta) == [1, 3, 5] and set(sweep.attack) == {"pgd20"}
    assert list(sweep.mac_ratio) == [2.0, 4.0, 5.0] and list(sweep.A_rob) == [40.0] * 3


def test_tradeoff_has_one_curve_per_allocation_and_alpha_mode(tmp_path):
    from gdws.tables import plot_tradeoff, tradeoff_runs

    mine = {"experiment": "mine", "model": "vgg16", "method": "gdws", "attack": "pgd20", "gdws_form": "explicit"}
    rows = [_run(1, **{**mine, "method": "dense", "gdws_form": ""}, fps=100.0),
            _run(2, **mine, gdws_constraint="beta=3", gdws_alphas="none", macs=50, fps=150.0, fps_dense=120.0),
            _run(3, **mine, gdws_constraint="beta=1", gdws_alphas="none", macs=80),
            _run(4, **mine, gdws_constraint="macs_ratio=2", gdws_alphas="pgd", macs=50),
            _run(5, **mine, gdws_constraint="beta=1", gdws_alphas="pgd", macs=90),
            # the same function at dense cost, and another attack: neither is a point of these curves
            _run(6, **{**mine, "gdws_form": "implicit"}, gdws_constraint="beta=3", gdws_alphas="none", macs=100),
            _run(7, **{**mine, "attack": "autoattack"}, gdws_constraint="beta=3", gdws_alphas="none", macs=50)]
    runs = load_runs([_write(tmp_path / "runs.csv", NEW + ("attack", "gdws_form", "fps_dense"), rows)])
    curve = tradeoff_runs(runs, "mine")
    assert list(curve.run_dir) == ["outputs/run5", "outputs/run3", "outputs/run2", "outputs/run4"]  # by MAC ratio
    assert list(curve.allocation) == ["LEGO (beta per layer)"] * 3 + ["network MAC budget"]
    assert list(curve.mac_ratio) == pytest.approx([100 / 90, 1.25, 2.0, 2.0])
    assert list(curve.fps_ratio) == pytest.approx([1.0, 1.0, 1.25, 1.0])  # run 2: its own side-by-side timing
    assert plot_tradeoff(runs, tmp_path, "mine").stat().st_size > 10_000
    assert plot_tradeoff(runs, tmp_path, "no such experiment") is None


def test_markdown_and_latex_hold_both_values(tmp_path, runs_csvs):
    write_paper_tables(load_runs(runs_csvs), tmp_path)
    md, tex = (tmp_path / "admm.md").read_text(), (tmp_path / "admm.tex").read_text()
    assert "39.50 / 46.28" in md and "2.60 / 3.31" in md
    assert "- / 42.67" in md  # row 8 (ADMM 25 %) not run
    assert "39.50 & 46.28" in tex and r"\begin{tabular}" in tex and tex.count(r" \\") >= 10 + 2
    assert "preact\\_resnet18" in tex


def test_a_note_joins_every_title(tmp_path, runs_csvs):
    write_paper_tables(load_runs(runs_csvs), tmp_path, note="Network: ours, 10 epochs of fast AT")
    md, tex = (tmp_path / "hydra.md").read_text(), (tmp_path / "hydra.tex").read_text()
    assert md.splitlines()[0].endswith("/ paper. Network: ours, 10 epochs of fast AT")
    assert r"\caption{" in tex and "Network: ours, 10 epochs of fast AT}" in tex


def test_scale_filter_keeps_only_rows_of_that_scale(runs_csvs):
    kept = set(load_runs(runs_csvs, scale="cpu").experiment)
    assert kept == {"table_admm", "table_lightweight", "table_hydra", "mine"}  # old rows: scale unknown
    assert load_runs(runs_csvs, scale="paper").empty


def test_a_table_is_filled_from_one_scale(tmp_path):
    admm = {"table": "admm", "experiment": "table_admm", "model": "vgg16"}
    rows = [_run(1, **admm, method="dense", scale="cpu"),
            _run(2, **admm, method="gdws", gdws_constraint="beta=0.5", scale="paper", A_rob=41.0),
            # newer, but shrunk: never a cell of the paper-scale table
            _run(3, **admm, method="gdws", gdws_constraint="beta=0.5", scale="cpu", A_rob=30.0),
            _run(4, **admm, method="gdws", gdws_constraint="beta=0.5", scale="smoke", A_rob=10.0)]
    runs = load_runs([_write(tmp_path / "runs.csv", NEW, rows)])
    sides = write_paper_tables(runs, tmp_path)
    assert _row(sides, "admm", 2).A_rob == 41.0 and _row(sides, "admm", 2).n_candidates == 1
    assert math.isnan(_row(sides, "admm", 1).A_rob)  # the dense run is at scale cpu only
    assert set(sides["admm"].scale) - {""} == {"paper"} and "ours (paper; gpu A)" in (tmp_path / "admm.md").read_text()
    cpu = write_paper_tables(load_runs([tmp_path / "runs.csv"], scale="cpu"), tmp_path / "cpu")
    assert _row(cpu, "admm", 2).A_rob == 30.0 and _row(cpu, "admm", 1).A_nat == 70.0


def test_cli_writes_under_outputs_unless_the_output_is_named(tmp_path, monkeypatch):
    parse_args = runpy.run_path(str(REPO / "scripts" / "make_tables.py"))["parse_args"]
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    assert parse_args(["--runs", "outputs/runs.csv"]).out == tmp_path / "outputs" / "tables"
    assert parse_args(["--out", "results/tables"]).out == Path("results/tables")


def test_cli_writes_tables_and_plots(tmp_path, runs_csvs):
    out = tmp_path / "tables"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_tables.py"), "--runs", *map(str, runs_csvs),
                    "--out", str(out)], check=True, capture_output=True, cwd=tmp_path)
    for table in ("hydra", "admm", "lightweight", "robnet"):
        assert {(out / f"{table}{ext}").is_file() for ext in (".csv", ".md", ".tex")} == {True}
    assert (out / "mine.md").is_file()  # an experiment of our own
    assert (out / "fps_vs_robustness_vgg16_vgg16_hydra.png").stat().st_size > 10_000
    assert (out / "beta_sweep_table_admm_vgg16.png").stat().st_size > 10_000
