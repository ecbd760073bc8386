"""Every row of a paper table as run.py commands: train each network once, then run each row.

A table experiment (conf/experiment/table_<name>.yaml) lists under ``paper_rows`` the overrides that make
each row of the paper's table. ``table_commands`` turns them into run.py command lines: first one
``stage=train`` command per distinct network (so no row waits on another's training, and under a cluster
launcher the conversion jobs hold no GPU idle), then one command per row. The user's overrides (``scale=cpu``,
``paths.runs_csv=...``, ``trainer=gpu``) go to every command.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
TABLES = ("hydra", "admm", "lightweight", "robnet")


def paper_rows(table: str, overrides: list[str] = ()) -> dict[int, list[str]]:
    """{paper row number: overrides} of ``experiment=table_<table>`` (composed with ``overrides``)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; one of {', '.join(TABLES)}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment=table_{table}", *overrides])
    rows = OmegaConf.to_container(cfg.paper_rows)
    return {int(k): [str(o) for o in v] for k, v in rows.items()}


def _network(row: list[str]) -> tuple[str, ...]:
    """The overrides of a row that decide which network is trained (model and its constructor arguments)."""
    return tuple(o for o in row if o.split("=", 1)[0].split(".", 1)[0] == "model")


def table_commands(table: str, overrides: list[str] = (), python: str = sys.executable) -> list[list[str]]:
    """run.py command lines for ``table``: one ``stage=train`` per distinct network, then one per paper row."""
    rows = paper_rows(table, list(overrides))
    base = [python, str(REPO / "run.py"), f"experiment=table_{table}", *overrides]
    networks = list(dict.fromkeys(_network(r) for r in rows.values()))
    train = [[*base, *net, "stage=train"] for net in networks]
    return train + [[*base, *rows[n], f"paper_row={n}"] for n in sorted(rows)]


def run_table(table: str, overrides: list[str] = (), dry_run: bool = False) -> int:
    """Run (or with ``dry_run`` print) every command of ``table``; returns the number of failed commands.

    A failed training stops the table (its rows could only fail); a failed row is reported and the next
    row runs.
    """
    failed = 0
    for cmd in table_commands(table, overrides):
        print(" ".join(cmd[1:]), flush=True)
        if dry_run:
            continue
        if subprocess.run(cmd, cwd=REPO).returncode != 0:
            failed += 1
            print(f"FAILED: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
            if "stage=train" in cmd:
                break
    return failed
