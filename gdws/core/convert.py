"""convert(): turn the convs of a pre-trained network into GDWS layers (spec section 5)."""
from __future__ import annotations

import copy
import os
from collections import Counter
from typing import Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from .allocation import Decomposition, check_beta, check_max_channels, lego_g, mego_g
from .budget import BudgetLayer, allocate_macs, check_macs_ratio, check_speedup
from .discovery import default_example_input, skip_reasons, trace_layers
from .layer import GDWSConv2d

REPORT_COLUMNS = ["name", "C", "K", "M", "stride", "groups", "G", "error", "macs_before", "macs_after",
                  "converted", "reason", "g_hist"]


def _g_hist(g: Tensor) -> str:
    """Compact histogram of g, e.g. '0:3 1:10 9:51' (value:count)."""
    return " ".join(f"{v}:{n}" for v, n in sorted(Counter(g.tolist()).items()))


def convert(model: nn.Module, beta: float | None = None, max_channels: int | None = None,
            macs_ratio: float | None = None, alphas: dict[str, Tensor] | None = None,
            example_input: Tensor | None = None, input_size: Sequence[int] = (3, 32, 32),
            include: Sequence[str] | None = None, exclude: Sequence[str] | None = None, skip_first: bool = True,
            implicit: bool = False, force: bool = False, speedup: float | None = None,
            device: torch.device | str | None = None,
            latency_cache: str | os.PathLike | bool | None = None,
            latency_time: float = 0.05) -> tuple[nn.Module, pd.DataFrame]:
    """Convert a pre-trained network to GDWS; returns (converted deep copy, per-Conv2d report). The input is untouched.

    Exactly one budget: `beta` (LEGO, same error budget in every layer), `max_channels` (MEGO, same G budget in every
    layer), `macs_ratio` (network-level: total MACs after <= total before / r, counting every Conv2d and Linear,
    with the least total weighted error) or `speedup` (network-level latency: the least total weighted error such
    that the model optimised by gdws.fast.optimize_for_inference measures >= speedup x faster than the BN-folded
    dense model on `device` (default: example_input's) for example_input's batch size; see gdws.fast.speedup.
    Per-layer latency tables are cached in `latency_cache` (default ~/.cache/gdws/latency or $GDWS_LATENCY_CACHE;
    False: no cache); latency_time: seconds of timing per candidate and measurement (more on a noisy machine).
    The report then also has columns form (chosen by optimize_for_inference), latency_ms
    (measured) and predicted_ms (latency table), and attrs speedup_requested / speedup_measured / t_dense_ms /
    t_converted_ms / error_gap (certified distance of the knapsack solution to the optimum, in error units).
    macs_ratio is solved greedily by score per MAC on each layer's convex hull
    of options (components, or staying dense when that is cheaper); optimality gap: total error <= optimal total
    error + the score of the first hull segment that did not fit (the fractional-knapsack bound; proof in
    gdws.core.budget), returned in report.attrs['macs_ratio_gap'] (0 means optimal). An unreachable r raises a
    ValueError naming the largest reachable ratio.
    alphas: {layer name: Tensor [C]} error weights (missing layers use ones).
    Output sizes and execution order come from one eval-mode forward pass on `example_input` (default zeros of
    (1, *input_size) on the model's device). Skip rules (see `discovery.skip_reasons`): first conv, 1x1,
    grouped/depthwise, not used in forward, `exclude` fnmatch patterns; `include` patterns override the first-conv and
    1x1 rules. A layer whose GDWS MACs >= its dense MACs stays dense ('no MAC gain') unless force=True.
    implicit=True keeps nn.Conv2d modules with weight What (same function) instead of GDWSConv2d modules.
    Report columns: name, C, K, M, stride, groups, G, error, macs_before, macs_after, converted, reason, g_hist
    (MACs per sample; attrs 'macs_total_before'/'macs_total_after' include the Linear layers and unconverted convs).
    """
    budgets = [b is not None for b in (beta, max_channels, macs_ratio, speedup)]
    if sum(budgets) != 1:
        raise ValueError("pass exactly one of beta= (per-layer error budget), max_channels= (per-layer G budget), "
                         "macs_ratio= (network MAC reduction factor) or speedup= (measured latency reduction factor)")
    speedup = check_speedup(speedup) if speedup is not None else None
    beta = check_beta(beta) if beta is not None else None
    max_channels = check_max_channels(max_channels) if max_channels is not None else None
    macs_ratio = check_macs_ratio(macs_ratio) if macs_ratio is not None else None
    converted = copy.deepcopy(model)
    modules = dict(converted.named_modules())
    alphas = dict(alphas or {})
    unknown = [n for n in alphas if not isinstance(modules.get(n), nn.Conv2d)]
    if unknown:
        raise ValueError(f"alphas has names that are not Conv2d modules of the model: {unknown[:5]}; pass a dict "
                         "keyed by module names as in model.named_modules() (e.g. from compute_alphas)")
    if example_input is None:
        example_input = default_example_input(converted, input_size)
    traces = trace_layers(converted, example_input)
    reasons = skip_reasons(traces, include, exclude, skip_first)
    decs = {n: Decomposition(modules[n].weight.detach(), alphas.get(n)) for n, r in reasons.items() if not r}

    def unit_cost(name: str) -> int:
        conv = modules[name]
        return (conv.kernel_size[0] * conv.kernel_size[1] + conv.out_channels) * traces[name].pixels()

    if macs_ratio is not None:
        cands = [BudgetLayer(n, d.scores, unit_cost(n), traces[n].dense_macs()) for n, d in decs.items()]
        total_before = sum(t.dense_macs() for t in traces.values())
        fixed = total_before - sum(b.dense_cost for b in cands)
        gs, gap = allocate_macs(cands, total_before, fixed, macs_ratio, allow_dense=not force)
    elif speedup is not None:
        # imported here: measuring latency needs the fast forms, and gdws.fast itself imports the core
        from gdws.fast.speedup import allocate_speedup

        device = torch.device(device) if device is not None else example_input.device
        target = copy.deepcopy(model).eval().to(device)
        speed = allocate_speedup(target, {n: d.scores for n, d in decs.items()}, example_input.to(device), speedup,
                                 lambda gs: _built(target, decs, gs), latency_cache, allow_dense=not force,
                                 min_run_time=latency_time)
        gs = speed.gs
    else:
        gs = {n: lego_g(d.scores, beta) if beta is not None else mego_g(d.scores, max_channels)
              for n, d in decs.items()}
    rows = []
    for name, reason in reasons.items():
        conv, trace = modules[name], traces[name]
        before = trace.dense_macs()
        row = dict(name=name, C=conv.in_channels, K=conv.kernel_size[0] if conv.kernel_size[0] == conv.kernel_size[1]
                   else tuple(conv.kernel_size), M=conv.out_channels, stride=tuple(conv.stride), groups=conv.groups,
                   G=pd.NA, error=0.0, macs_before=before, macs_after=before, converted=False, reason=reason,
                   g_hist="")
        if not reason:
            g = gs[name]
            if g is None:
                row["reason"] = "kept dense by " + ("latency" if speedup is not None else "MAC") + " budget"
            else:
                after = int(g.sum()) * unit_cost(name)
                row["G"] = int(g.sum())
                if after >= before and not force and speedup is None:  # speedup: measured faster is enough
                    row["reason"] = "no MAC gain"
                else:
                    plan = decs[name].plan(g)
                    row.update(error=plan.error, macs_after=after, converted=True, g_hist=_g_hist(g))
                    _replace(converted, name, conv, plan, implicit)
        rows.append(row)
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS).astype({"G": "Int64"})
    if speedup is not None:
        report["form"] = report["name"].map(speed.forms)
        report["latency_ms"] = report["name"].map(speed.measured) * 1e3
        report["predicted_ms"] = report["name"].map(speed.predicted) * 1e3
        report.attrs.update(speed.attrs)
    linear = sum(t.dense_macs() for t in traces.values() if isinstance(t.module, nn.Linear))
    report.attrs["macs_total_before"] = int(report["macs_before"].sum()) + linear
    report.attrs["macs_total_after"] = int(report["macs_after"].sum()) + linear
    if macs_ratio is not None:
        report.attrs["macs_ratio_gap"] = gap
    return converted, report


def _built(model: nn.Module, decs: dict, gs: dict[str, Tensor | None]) -> nn.Module:
    """A copy of ``model`` with the GDWS layers of allocation ``gs`` (None keeps a layer dense)."""
    out = copy.deepcopy(model)
    for name, g in gs.items():
        if g is not None:
            _replace(out, name, out.get_submodule(name), decs[name].plan(g), implicit=False)
    return out


def _replace(model: nn.Module, name: str, conv: nn.Conv2d, plan, implicit: bool) -> None:
    """Put the plan in place: weight What in the same conv (implicit) or a GDWSConv2d module (explicit)."""
    if implicit:
        with torch.no_grad():
            conv.weight.copy_(plan.weight_hat())
        return
    layer = GDWSConv2d.from_plan(plan, conv)
    layer.train(conv.training)
    if name:
        model.set_submodule(name, layer)
    else:
        raise ValueError("the model itself is a single Conv2d; convert it with GDWSConv2d.from_conv instead")
