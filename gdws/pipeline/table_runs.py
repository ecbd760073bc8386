"""Every row of a paper table as run.py commands: train each network once, then run each row.

A table experiment (conf/experiment/table_<name>.yaml) lists under ``paper_rows`` the overrides that make
each row of the paper's table. ``table_commands`` turns them into run.py command lines: first one
``stage=train`` command per distinct network (so no row waits on another's training, and under a cluster
launcher the conversion jobs hold no GPU idle), then one command per row. The user's overrides (``scale=cpu``,
``paths.runs_csv=...``, ``trainer=gpu``) go to every command.

A table at a scale may say more (conf/table_scale/<experiment>_<scale>.yaml): ``table_choices``, config group
choices that Hydra cannot switch from such a file (typed on every command, before the user's overrides, unless
the user types that group), and ``scale_rows``, the only rows that exist at that scale.
"""
from __future__ import annotations

import csv
import functools
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[2]
TABLES = ("hydra", "admm", "lightweight", "robnet")


def parse_rows(spec: str) -> list[int]:
    """Row numbers from ``1-5``, ``1,3,5`` or ``1-3,7``, in the order given (repeats dropped)."""
    rows: list[int] = []
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            span = range(int(first), int(last) + 1) if dash else [int(first)]
        except ValueError:
            raise ValueError(f"--rows takes row numbers like 1-5 or 1,3,5; got {spec!r}") from None
        if not span or min(span) < 1:
            raise ValueError(f"--rows takes row numbers >= 1 with ranges low-high; got {spec!r}")
        rows.extend(span)
    return list(dict.fromkeys(rows))


def _compose(table: str, overrides: Sequence[str]) -> DictConfig:
    """The config of ``experiment=table_<table>`` with ``overrides`` (no Hydra job: interpolations unresolved),
    composed once per process for each (read-only: shared by the callers)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; one of {', '.join(TABLES)}")
    return _composed(table, tuple(overrides))


@functools.lru_cache(maxsize=256)
def _composed(table: str, overrides: tuple[str, ...]) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment=table_{table}", *overrides])
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _group(override: str) -> str:
    """The key an override sets: ``train`` for ``train=fgsm_rs``, ``data.root`` for ``+data.root=x``."""
    return override.split("=", 1)[0].lstrip("+~")


def table_choices(table: str, overrides: Sequence[str] = ()) -> list[str]:
    """The group choices the table needs at this scale (``table_choices``) that ``overrides`` do not type."""
    choices = OmegaConf.select(_compose(table, overrides), "table_choices", default=None) or {}
    typed = {_group(o) for o in overrides}
    return [f"{group}={choice}" for group, choice in choices.items() if group not in typed]


def paper_rows(table: str, overrides: Sequence[str] = ()) -> dict[int, list[str]]:
    """{paper row number: overrides} of ``experiment=table_<table>`` composed with ``overrides``: every row of
    the table, or only its ``scale_rows`` where the scale defines them."""
    cfg = _compose(table, overrides)
    rows = {int(k): [str(o) for o in v] for k, v in OmegaConf.to_container(cfg.paper_rows).items()}
    kept = OmegaConf.select(cfg, "scale_rows", default=None)
    return {n: o for n, o in rows.items() if kept is None or n in kept}


def _network(row: list[str]) -> tuple[str, ...]:
    """The overrides of a row that decide which network is trained (model and its constructor arguments)."""
    return tuple(o for o in row if o.split("=", 1)[0].split(".", 1)[0] == "model")


def _pick(table: str, defined: dict[int, list[str]], rows: Sequence[int] | None) -> list[int]:
    """``rows`` (all defined rows when None), checked against the rows the table defines at this scale."""
    if rows is None:
        return sorted(defined)
    missing = [n for n in rows if n not in defined]
    if missing:
        raise ValueError(f"table {table} has no row {missing} at this scale; its rows here: {sorted(defined)}")
    return list(rows)


def table_commands(table: str, overrides: Sequence[str] = (), python: str = sys.executable,
                   rows: Sequence[int] | None = None) -> list[list[str]]:
    """run.py command lines for ``table``: one ``stage=train`` per distinct network the chosen ``rows`` need
    (all rows of this scale when None), then one per row, in the order of ``rows``."""
    overrides = list(overrides)
    defined = paper_rows(table, overrides)
    picked = _pick(table, defined, rows)
    base = [python, str(REPO / "run.py"), f"experiment=table_{table}", *table_choices(table, overrides), *overrides]
    networks = list(dict.fromkeys(_network(defined[n]) for n in picked))
    train = [[*base, *net, "stage=train"] for net in networks]
    return train + [[*base, *defined[n], f"paper_row={n}"] for n in picked]


def _row_key(cfg: DictConfig) -> tuple[str, str, str, str]:
    """(table, paper_row, scale, attack description) of a composed row config: what identifies its result."""
    from gdws.eval import attack_spec

    attack = attack_spec(OmegaConf.to_container(cfg.attack, resolve=True))
    return str(cfg.table), str(cfg.paper_row), str(cfg.scale), attack


def _runs_csv(cfg: DictConfig) -> Path:
    """``paths.runs_csv`` of a composed config; a relative path is relative to the project (run.py's cwd)."""
    path = Path(str(OmegaConf.select(cfg, "paths.runs_csv")))
    return path if path.is_absolute() else REPO / path


def row_done(cmd: Sequence[str]) -> bool:
    """True when the runs CSV of the row command ``cmd`` (a ``table_commands`` line) already holds a row with
    its table, paper row, scale and attack."""
    cfg = _compose(str(cmd[2]).removeprefix("experiment=table_"), list(cmd[3:]))
    path = _runs_csv(cfg)
    if not path.is_file():
        return False
    key = _row_key(cfg)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            number = row.get("paper_row") or ""
            number = str(int(float(number))) if number else ""  # pandas may have written 3 as 3.0
            if (row.get("table"), number, row.get("scale"), row.get("attack")) == key:
                return True
    return False


def run_table(table: str, overrides: Sequence[str] = (), dry_run: bool = False, rows: Sequence[int] | None = None,
              skip_done: bool = False) -> int:
    """Run (or with ``dry_run`` print) the commands of ``table`` (only ``rows`` when given); returns the number
    of failed commands.

    With ``skip_done``, a row already in the runs CSV (same table, paper row, scale and attack) is not run
    again, nor the training of a network whose rows are all done. A failed training stops the table (its rows
    could only fail); a failed row is reported and the next row runs.
    """
    if skip_done:
        picked = _pick(table, paper_rows(table, overrides), rows)
        row_cmds = table_commands(table, overrides, rows=picked)[-len(picked):] if picked else []
        done = [n for n, cmd in zip(picked, row_cmds) if row_done(cmd)]
        for n in done:
            print(f"table {table} row {n}: in the runs CSV already, not run again", flush=True)
        rows = [n for n in picked if n not in done]
    cmds = table_commands(table, overrides, rows=rows)
    failed = 0
    for cmd in cmds:
        print(" ".join(cmd[1:]), flush=True)
        if dry_run:
            continue
        if subprocess.run(cmd, cwd=REPO).returncode != 0:
            failed += 1
            print(f"FAILED: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
            if "stage=train" in cmd:
                break
    return failed
