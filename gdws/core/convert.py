"""convert(): turn the convs of a pre-trained network into GDWS layers (spec section 5)."""
from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable
from typing import Callable, Protocol, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from .allocation import Decomposition, check_beta, check_max_channels, lego_g, mego_g
from .budget import BudgetLayer, allocate_macs, check_macs_ratio
from .calibration import calibration_images, layer_statistics, recalibrate_batchnorm
from .discovery import default_example_input, eval_mode, skip_reasons, trace_layers
from .layer import GDWSConv2d
from .sequential import refit_network
from .settings import CalibrationSettings, check_refit_rounds

REPORT_COLUMNS = ["name", "C", "K", "M", "stride", "groups", "G", "error", "macs_before", "macs_after",
                  "converted", "reason", "g_hist"]


class Allocation(Protocol):
    """What an `Allocator` returns: per candidate layer g (LongTensor [C]) or None (kept dense), the budget's
    name for the report ('latency'), extra report columns {column: {layer name: value}} and report attrs."""

    gs: dict[str, Tensor | None]
    label: str
    columns: dict[str, dict[str, object]]
    attrs: dict[str, float]


#: allocator(dense model, {layer: score matrix [C, r]}, example_input, build(gs) -> converted model, allow_dense)
Allocator = Callable[[nn.Module, dict[str, Tensor], Tensor, Callable[[dict], nn.Module], bool], Allocation]


def _g_hist(g: Tensor) -> str:
    """Compact histogram of g, e.g. '0:3 1:10 9:51' (value:count)."""
    return " ".join(f"{v}:{n}" for v, n in sorted(Counter(g.tolist()).items()))


def convert(model: nn.Module, beta: float | None = None, max_channels: int | None = None,
            macs_ratio: float | None = None, alphas: dict[str, Tensor] | None = None,
            example_input: Tensor | None = None, input_size: Sequence[int] = (3, 32, 32),
            include: Sequence[str] | None = None, exclude: Sequence[str] | None = None, skip_first: bool = True,
            implicit: bool = False, force: bool = False, allocator: Allocator | None = None,
            calibration: Tensor | Iterable | None = None, calibration_settings: CalibrationSettings | None = None,
            **calibration_options: object) -> tuple[nn.Module, pd.DataFrame]:
    """Convert a pre-trained network to GDWS; returns (converted deep copy, per-Conv2d report). The input is untouched.

    Exactly one budget: `beta` (LEGO, same error budget in every layer), `max_channels` (MEGO, same G budget in every
    layer), `macs_ratio` (network-level: total MACs after <= total before / r, counting every Conv2d and Linear,
    with the least total weighted error) or `allocator` (a callable allocating from the layers' scores, e.g. the
    measured-latency budget that `gdws.convert(speedup=r)` builds; see `Allocator`).
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

    Data-aware conversion (beyond the paper): `calibration` is a tensor of images [N, C, H, W] or an iterable of
    batches (a DataLoader; checked and held as one CPU tensor, see gdws.core.calibration). How it is used is a
    gdws.core.settings.CalibrationSettings: `calibration_settings`, with any of its fields given as keywords
    replacing its values (`convert(model, macs_ratio=3, calibration=x, refit_rounds=2)`); the defaults are the
    best measured settings. With it, `whiten` takes every layer's scores and kernels from its input-whitened
    decomposition (scores = expected squared output error on the calibration inputs, see
    allocation.Decomposition; `beta` is then in those units) and `refit` solves each converted layer's pointwise
    stage and bias in closed form, in forward order, against the original network's outputs (gdws.core.refit);
    G and MACs are unchanged. `fisher` also weights each layer's output side by its K-FAC Fisher factor
    (gdws.core.calibration.output_gradient_moments: one backward pass per batch, no weight change), so that
    scores estimate the loss increase and compare across layers; it changes the allocation and the kernels, not
    the refit's target. `refit_rounds` > 0 follows each layer's pointwise refit with that many rounds of
    alternating depthwise / pointwise least squares (gdws.core.refit_alternating: more accurate, costlier for
    wide layers). `residual_target` (default: wherever the refit is sequential) refits a conv that feeds a residual
    add to the block's output, so that its target also absorbs the shortcut's error (gdws.core.residual_target);
    `bn_recalibration` re-estimates the BatchNorm statistics on the images afterwards. `ridge`: relative ridge of
    all of them.
    The report then has columns calib_err_before / calib_err_after: each converted layer's relative output
    error ||y - y_hat||^2 / ||y||^2 on the calibration set (converted network's input against the original
    network's output), before and after its refit; attrs 'calibration_sequential' says which refit path ran.
    Time: one pass for the statistics (one more, with a backward, for Fisher) and, for the refit, one forward
    pass of each network on cached activations (gdws.core.sequential; where the forward cannot be cut into
    pieces, about one full forward pass per converted layer instead). Memory: one batch (`batch_size` images)
    for the statistics; the refit's caches and batch stay within `calibration_memory` GiB.
    """
    settings = CalibrationSettings.from_options(calibration_settings, **calibration_options)
    check_refit_rounds(settings.refit_rounds, calibration is not None and settings.refit)
    budgets = [b is not None for b in (beta, max_channels, macs_ratio, allocator)]
    if sum(budgets) != 1:
        raise ValueError("pass exactly one of beta= (per-layer error budget), max_channels= (per-layer G budget), "
                         "macs_ratio= (network MAC reduction factor) or speedup= (measured latency reduction factor)")
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
    images = calibration_images(calibration, example_input) if calibration is not None else None
    traces = trace_layers(converted, example_input)
    reasons = skip_reasons(traces, include, exclude, skip_first)
    names = [n for n, r in reasons.items() if not r]
    fisher = images is not None and settings.use_fisher(_fisher_applies(converted, example_input, traces, names))
    moments, curvature = (layer_statistics(converted, names, images, settings.batch_size, settings.whiten, fisher)
                          if images is not None else ({}, {}))
    decs = {n: Decomposition(modules[n].weight.detach(), alphas.get(n), moments.get(n), settings.ridge,
                             curvature.get(n)) for n in names}

    def unit_cost(name: str) -> int:
        conv = modules[name]
        return (conv.kernel_size[0] * conv.kernel_size[1] + conv.out_channels) * traces[name].pixels()

    allocation = None
    if macs_ratio is not None:
        cands = [BudgetLayer(n, d.scores, unit_cost(n), traces[n].dense_macs()) for n, d in decs.items()]
        total_before = sum(t.dense_macs() for t in traces.values())
        fixed = total_before - sum(b.dense_cost for b in cands)
        gs, gap = allocate_macs(cands, total_before, fixed, macs_ratio, allow_dense=not force)
    elif allocator is not None:
        allocation = allocator(model, {n: d.scores for n, d in decs.items()}, example_input,
                               lambda gs: _built(model, decs, gs), not force)
        gs = allocation.gs
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
                row["reason"] = f"kept dense by {allocation.label if allocation else 'MAC'} budget"
            else:
                after = int(g.sum()) * unit_cost(name)
                row["G"] = int(g.sum())
                # a measured budget (allocator) accepts a layer that runs faster, whatever its MACs
                if after >= before and not force and allocation is None:
                    row["reason"] = "no MAC gain"
                else:
                    plan = decs[name].plan(g)
                    row.update(error=plan.error, macs_after=after, converted=True, g_hist=_g_hist(g))
                    refitting = images is not None and settings.refit
                    _replace(converted, name, conv, plan, implicit=implicit and not refitting)
        rows.append(row)
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS).astype({"G": "Int64"})
    if images is not None and settings.refit:
        order = sorted((r["name"] for r in rows if r["converted"]), key=lambda n: traces[n].order)
        stats, report.attrs["calibration_sequential"] = refit_network(model, converted, order, images, settings)
        report["calib_err_before"] = report["name"].map({n: s.before for n, s in stats.items()})
        report["calib_err_after"] = report["name"].map({n: s.after for n, s in stats.items()})
    if images is not None and settings.bn_recalibration:
        report.attrs["calibration_bn_recalibrated"] = recalibrate_batchnorm(converted, images, settings.batch_size)
    if images is not None and settings.refit:
        if implicit:  # refit on the explicit layers, then keep the same function as plain convs
            for n in order:
                converted.set_submodule(n, converted.get_submodule(n).to_conv())
    if allocation is not None:
        for column, values in allocation.columns.items():
            report[column] = report["name"].map(values)
        report.attrs.update(allocation.attrs)
    linear = sum(t.dense_macs() for t in traces.values() if isinstance(t.module, nn.Linear))
    report.attrs["macs_total_before"] = int(report["macs_before"].sum()) + linear
    report.attrs["macs_total_after"] = int(report["macs_after"].sum()) + linear
    if macs_ratio is not None:
        report.attrs["macs_ratio_gap"] = gap
    report.attrs["calibration_samples"] = 0 if images is None else int(images.shape[0])
    report.attrs["calibration_fisher"] = fisher
    return converted, report


def _fisher_applies(model: nn.Module, example_input: Tensor, traces: dict, names: list[str]) -> bool:
    """Whether the Fisher weighting can run: ``model`` maps example_input to logits [N, K >= 2] (it samples labels
    from their softmax) and each layer in ``names`` runs once per forward (one output gradient per layer)."""
    if any(len(traces[n].output_hws) != 1 for n in names):
        return False
    with eval_mode(model), torch.no_grad():
        out = model(example_input)
    return isinstance(out, Tensor) and out.dim() == 2 and out.shape[1] >= 2


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
