"""``gdws.convert``: the core's conversion plus the measured-latency budget, which sits above the core.

gdws.core.convert allocates under an error, G or MAC budget with torch alone; a latency budget needs the fast
forms and timing of gdws.fast, so it is plugged in here as an allocator and the core never imports gdws.fast.
"""
from __future__ import annotations

import os
from typing import Any

import pandas as pd
import torch
from torch import nn

from gdws.core.convert import convert as core_convert


def convert(model: nn.Module, *, speedup: float | None = None, device: torch.device | str | None = None,
            latency_cache: str | os.PathLike | bool | None = None, latency_time: float = 0.05,
            runtime: str = "torch", allow_removal: bool = False, **kwargs: Any) -> tuple[nn.Module, pd.DataFrame]:
    """Convert ``model`` to GDWS under exactly one budget: gdws.core.convert's (beta=, max_channels=, macs_ratio=)
    or ``speedup``; every other keyword (alphas, calibration, refit, include, ...) is gdws.core.convert's.

    speedup: the least total weighted error such that the model optimised by gdws.fast.optimize_for_inference
    measures >= speedup x faster than the BN-folded dense model on ``device`` (default: example_input's) for
    example_input's batch size (gdws.fast.speedup). Per-layer latency tables are cached in ``latency_cache``
    (default ~/.cache/gdws/latency or $GDWS_LATENCY_CACHE; False: no cache); latency_time: seconds of timing per
    candidate and measurement (more on a noisy machine). The report then also has columns form, latency_ms
    (measured) and predicted_ms (latency table), and attrs speedup_requested / speedup_measured / t_dense_ms /
    t_converted_ms / error_gap (certified distance of the knapsack solution to the optimum, in error units).
    runtime: what the latency is measured on (torch, onnxruntime, openvino: the runtime the model will be deployed
    with; gdws.fast.runtimes). allow_removal: let the latency budget set G = 0 in a converted layer (its output is
    then its bias alone); by default every layer it converts keeps at least one component.
    """
    if speedup is None:
        return core_convert(model, **kwargs)
    from gdws.fast.speedup import speedup_allocator  # timing machinery only when a latency budget is asked for

    allocator = speedup_allocator(speedup, device, latency_cache, latency_time, runtime, allow_removal)
    return core_convert(model, allocator=allocator, **kwargs)
