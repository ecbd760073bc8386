"""A run's scale label (the ``scale`` column of its row) says what ran: ``paper`` only when nothing is shrunk.

Rows labelled paper stand beside the paper's numbers. A run labelled paper whose width, data subsets, epochs or
training batches differ from what its model, data, recipe and trainer configs give at paper scale (an experiment
or the command line shrank them) would put reduced numbers there: ``check_scale`` refuses it before anything
runs. Such a run is labelled ``scale=custom`` (conf/scale/custom.yaml), or runs as ``scale=cpu``/``smoke``,
whose labels already say that they are shrunk.
"""
from __future__ import annotations

import functools
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from gdws.pipeline.context import choice

#: The settings a scale shrinks that change the numbers of a row.
SHRUNK = ("model.width", "data.train_subset", "data.eval_subset", "data.exact_only", "train.epochs",
          "trainer.limit_train_batches")
#: The config groups those settings come from: the reference is composed with the run's own choices.
GROUPS = ("model", "data", "train", "trainer")
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def paper_reference(choices: dict[str, str]) -> DictConfig:
    """The config at paper scale, with no experiment and nothing typed, for the config group ``choices``.

    Composed once per process for each set of choices (a compose takes a fraction of a second, and a sweep or a
    table's rows validate the same choices again and again); read-only, since it is shared.
    """
    return _reference(tuple(sorted(choices.items())), GlobalHydra.instance().is_initialized())


@functools.lru_cache(maxsize=64)
def _reference(choices: tuple[tuple[str, str], ...], in_hydra: bool) -> DictConfig:
    overrides = [f"{group}={option}" for group, option in choices] + ["scale=paper"]
    if in_hydra:  # inside run.py (or a test's compose context): its search path
        cfg = compose("config", overrides=overrides)
    else:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def shrunk_settings(cfg: DictConfig, reference: DictConfig) -> dict[str, tuple[object, object]]:
    """{key: (run's value, reference value)} for each of SHRUNK that differs between ``cfg`` and ``reference``."""
    values = {key: (OmegaConf.select(cfg, key), OmegaConf.select(reference, key)) for key in SHRUNK}
    return {key: pair for key, pair in values.items() if pair[0] != pair[1]}


def check_scale(cfg: DictConfig) -> None:
    """Raise one ValueError when ``cfg`` is labelled ``scale=paper`` but shrinks a setting of SHRUNK."""
    if cfg.get("scale") != "paper":
        return
    choices = {group: choice(group) for group in GROUPS if choice(group)}
    differ = shrunk_settings(cfg, paper_reference(choices))
    if differ:
        what = ", ".join(f"{key}={run!r} (paper scale: {paper!r})" for key, (run, paper) in differ.items())
        raise ValueError(f"this run is labelled scale=paper but is shrunk: {what}. Rows labelled paper stand beside "
                         "the paper's numbers; label it scale=custom (the sizes you set), or use scale=cpu or "
                         "scale=smoke")
