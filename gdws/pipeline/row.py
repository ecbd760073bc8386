"""The result row of a run (one line of results/runs.csv, plus row.json in the run folder)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from omegaconf import DictConfig

from gdws.eval import attack_spec
from gdws.pipeline.context import choice
from gdws.tracking import git_commit


def method_label(cfg: DictConfig) -> str:
    """The paper's method column: dense, gdws, <prune method> or <prune method>+gdws."""
    prune = cfg.prune.get("method") if cfg.prune.get("_target_") is not None else None
    gdws = bool(cfg.gdws.get("enabled", False))
    if prune:
        return f"{prune}+gdws" if gdws else str(prune)
    return "gdws" if gdws else "dense"


def _budget(cfg: DictConfig) -> str | None:
    """The GDWS complexity budget (macs_ratio or max_channels) as text, None when beta-constrained."""
    g = cfg.gdws
    if not g.get("enabled", False):
        return None
    if g.get("macs_ratio") is not None:
        return f"macs_ratio={g.macs_ratio}"
    if g.get("max_channels") is not None:
        return f"max_channels={g.max_channels}"
    return None


def build_row(cfg: DictConfig, facts: dict[str, Any]) -> dict[str, Any]:
    """Assemble the row from the config and the measured ``facts`` (accuracies, sizes, speeds, paths)."""
    g = cfg.gdws
    enabled = bool(g.get("enabled", False))
    row = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(cfg.paths.root_dir),
        "experiment": choice("experiment"),
        "model": choice("model", cfg.model.name),  # the config name: resnet20 and resnet20_w40 differ
        "width": cfg.model.get("width"),
        "data": choice("data", cfg.data.get("_target_", "").rsplit(".", 1)[-1]),
        "recipe": facts.pop("recipe"),
        "checkpoint": str(facts.pop("checkpoint")),
        "method": method_label(cfg),
        "prune_method": cfg.prune.get("method") if cfg.prune.get("_target_") is not None else None,
        "prune_ratio": cfg.prune.get("ratio") if cfg.prune.get("_target_") is not None else None,
        "gdws_beta": g.get("beta") if enabled else None,
        "gdws_budget": _budget(cfg),
        "gdws_alphas": g.get("alphas") if enabled else None,
        "attack": attack_spec(cfg.attack),
        "seed": cfg.seed,
        "run_dir": str(cfg.paths.output_dir),
    }
    row.update(facts)
    return row
