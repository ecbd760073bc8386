"""GDWS: generalized depthwise-separable convolutions for fast, robust CNNs without retraining.

The core (torch only): ``GDWSConv2d``, the optimal allocations ``lego`` / ``mego``, network ``convert``,
the alpha weights ``compute_alphas`` and fast inference ``optimize_for_inference``. Models, data,
training, evaluation and metrics live in the subpackages (``gdws.models``, ``gdws.data``, ...).

The names are loaded on first use, so that ``import gdws.<subpackage>`` (e.g. run.py's command-line handling)
does not pay for torch before it needs it.
"""
from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_EXPORTS = {"convert": "gdws.conversion", "optimize_for_inference": "gdws.fast",
            **dict.fromkeys(["GDWSConv2d", "GDWSPlan", "lego", "mego", "compute_alphas", "save_alphas", "load_alphas",
                             "load_converted"], "gdws.core")}

__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562) and keep the name here."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gdws' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
