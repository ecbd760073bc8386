"""The result row of a run (one CSV line, plus row.json in the run folder), built from what the steps did."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from gdws.pipeline.context import choice
from gdws.tracking import git_commit


#: Where this code lives: the row records the commit of the code that made it, wherever the project root is.
CODE_DIR = Path(__file__).resolve().parents[2]


def method_label(prune_method: str | None, gdws_layers: int) -> str:
    """The paper's method column from what was done: dense, gdws, <prune> or <prune>+gdws.

    A conversion that replaced no layer is not GDWS: the network that ran is the dense (or pruned) one.
    """
    gdws = gdws_layers > 0
    if prune_method:
        return f"{prune_method}+gdws" if gdws else prune_method
    return "gdws" if gdws else "dense"


def project_relative(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to the project root when it lies inside it (committed CSVs carry no machine paths)."""
    path, root = Path(path).resolve(), Path(root).resolve()
    try:
        return str(path.relative_to(root))
    except ValueError:  # outside the project (a user's own checkpoint): keep it as given
        return str(path)


def _model_label(cfg: DictConfig) -> str:
    """The model config's name (resnet20 and resnet20_w40 differ); a zoo model adds its zoo name."""
    config = choice("model", str(cfg.model.get("name")))
    return f"{config}:{cfg.model.name}" if config == "robustbench" else config


def build_row(cfg: DictConfig, facts: dict[str, Any]) -> dict[str, Any]:
    """Assemble the row from the run's identity (config choices) and the ``facts`` its steps returned."""
    root = cfg.paths.root_dir
    prune_method = facts.pop("prune_method", None)
    row = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(CODE_DIR),
        "table": cfg.get("table"),
        "paper_row": cfg.get("paper_row"),
        "scale": cfg.get("scale"),
        "experiment": choice("experiment"),
        "model": _model_label(cfg),
        "width": cfg.model.get("width"),
        "data": choice("data", cfg.data.get("_target_", "").rsplit(".", 1)[-1]),
        "recipe": facts.pop("recipe"),
        "checkpoint": project_relative(facts.pop("checkpoint"), root),
        "method": method_label(prune_method, int(facts.get("gdws_layers") or 0)),
        "prune_method": prune_method,
        "prune_ratio": facts.pop("prune_ratio", None),
        "gdws_beta": cfg.gdws.get("beta") if str(facts.get("gdws_constraint", "")).startswith("beta=") else None,
        "seed": cfg.seed,
        "run_dir": project_relative(cfg.paths.output_dir, root),
    }
    row.update(facts)
    return row
