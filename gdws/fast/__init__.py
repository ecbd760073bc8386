"""Fast exact inference forms of GDWS layers and the per-layer timing-based selection."""
from gdws.fast.fold import conv_bn_pairs, fold_batchnorm
from gdws.fast.candidates import build_forms
from gdws.fast.select import optimize_for_inference
from gdws.fast.spec import GDWSSpec

__all__ = ["GDWSSpec", "build_forms", "conv_bn_pairs", "fold_batchnorm", "optimize_for_inference"]
