"""Every row of all four paper tables, run through run.py at smoke scale and rendered beside the paper (slow)."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from gdws.pipeline.table_runs import REPO


@pytest.mark.slow
def test_all_29_rows_run_at_smoke_scale_and_render(tmp_path, cifar10_root):
    runs = tmp_path / "runs.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROJECT_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    cmd = [sys.executable, str(REPO / "scripts" / "run_table.py"), "all", "scale=smoke", f"data.root={cifar10_root}",
           f"paths.runs_csv={runs}", "logger=none", "progress=false", "trainer.enable_progress_bar=false"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=5400)
    assert out.returncode == 0, out.stderr[-5000:]
    rows = pd.read_csv(runs)
    assert len(rows) == 29 and set(rows["scale"]) == {"smoke"}
    assert sorted(zip(rows["table"], rows["paper_row"])) == sorted(
        (t, r) for t, n in (("hydra", 8), ("admm", 10), ("lightweight", 6), ("robnet", 5)) for r in range(1, n + 1))
    pruned = rows[rows["prune_method"].notna()]
    assert len(pruned) == 12 and (pruned["size_MB"] < pruned["size_MB_dense"]).all()
    admm = rows[rows["prune_method"] == "admm"]
    assert (admm["macs"] < admm["macs_dense"]).all()  # channels physically removed: fewer MACs
    hydra = rows[rows["method"] == "hydra"]
    assert (hydra["macs"] == hydra["macs_dense"]).all()  # unstructured zeros: the dense MACs
    tables = tmp_path / "tables"
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "make_tables.py"), "--runs", str(runs),
                          "--out", str(tables)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for table, n in (("hydra", 8), ("admm", 10), ("lightweight", 6), ("robnet", 5)):
        side = pd.read_csv(tables / f"{table}.csv")
        assert len(side) == n and side["A_nat"].notna().all() and side["size_MB"].notna().all(), table
        assert (tables / f"{table}.md").is_file() and (tables / f"{table}.tex").is_file()
    assert list(tables.glob("*.png"))
