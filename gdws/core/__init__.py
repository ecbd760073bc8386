"""GDWS core: optimal allocations (LEGO/MEGO), the GDWS layer, network conversion, alpha weights."""
from .allocation import GDWSPlan, lego, mego
from .alphas import compute_alphas, pgd_attack
from .convert import convert
from .layer import GDWSConv2d
from .serialization import load_alphas, load_converted, save_alphas

__all__ = ["GDWSConv2d", "GDWSPlan", "lego", "mego", "convert", "compute_alphas", "pgd_attack", "save_alphas",
           "load_alphas", "load_converted"]
