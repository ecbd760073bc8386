"""GDWS: generalized depthwise-separable convolutions for fast, robust CNNs without retraining.

The core (torch only): ``GDWSConv2d``, the optimal allocations ``lego`` / ``mego``, network ``convert``,
the alpha weights ``compute_alphas`` and fast inference ``optimize_for_inference``. Models, data,
training, evaluation and metrics live in the subpackages (``gdws.models``, ``gdws.data``, ...).
"""
from gdws.core import (GDWSConv2d, GDWSPlan, compute_alphas, convert, lego, load_alphas, load_converted, mego,
                       save_alphas)
from gdws.fast import optimize_for_inference

__all__ = ["GDWSConv2d", "GDWSPlan", "lego", "mego", "convert", "compute_alphas", "save_alphas", "load_alphas",
           "load_converted", "optimize_for_inference"]
__version__ = "0.1.0"
