"""One complete experiment run: weights -> prune -> GDWS -> evaluate -> metrics -> one logged row.

``run(cfg)`` (gdws.pipeline.runner) is what run.py calls with the composed Hydra config; each step lives in
its own module. The package itself stays light: run.py applies the GDWS constraint rule
(gdws.pipeline.constraint) before Hydra starts, and ``run.py --help`` should not pay for Lightning.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["run"]


def __getattr__(name: str) -> Any:
    """The runner's names (``run``, ``build_model``), imported on first use."""
    if name.startswith("__"):  # module dunders (__path__, __file__ ...) are not the runner's
        raise AttributeError(name)
    return getattr(importlib.import_module("gdws.pipeline.runner"), name)
