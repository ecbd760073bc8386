"""Latency budget: spread GDWS components over layers for a MEASURED end-to-end speed-up r (convert(speedup=r)).

Model. The optimised converted network takes T_fixed + sum_l t_l(choice_l), where t_l is read from the layer's
measured latency table (gdws.fast.latency_table: best G-only form at each G, and the dense conv) and T_fixed is
everything that is not a candidate layer: the model with every candidate at G = 0, timed end to end in the same
interleaved rounds as the dense model optimised the same way (BN folded, layout per conv; T_dense). The
tables are rescaled so that their dense entries sum to T_dense - T_fixed: isolated layers run with their
weights hot in cache and maybe under another load.
Options of layer l: dense (error 0), or G on a fine grid up to the measured range
(latency interpolated linearly between measured points; error = the least weighted error at that G, i.e. the
dropped scores of MEGO). The multiple-choice knapsack min sum error s.t. sum t_l <= T_dense / r - T_fixed is
solved by gdws.fast.mck (DP over a discretised latency axis, with a certified optimality gap).

Why a search. The table model under-predicts the real speed-up where a runtime's per-inference overhead dominates an
isolated layer's time and it fuses the whole network (OpenVINO: a layer alone costs far more than inside the
network). On the robust VGG-16 w0.5, speedup=1.5 chose an allocation the tables put at 1.5x that measured 2.51x (5.7x
fewer MACs, 9 points of A_rob lost); a multiplicative re-calibration clamped to 1.5 per step, 3 tries, did not
come back. So the knapsack capacity is searched on MEASURED whole-network ratios: each try builds the
allocation, optimises it (optimize_for_inference) and times it against the dense model in interleaved rounds
(paired ratios). The first capacity is the tables'; while every try misses r, the next comes from the measured /
predicted time of the converted layers; once one capacity overshoots (ratio > r (1 + OVERSHOOT)) and a larger
one misses (< r; the all-dense allocation counts as a 1x miss untimed), secant steps in (log capacity, log ratio)
aim at the window's middle, kept inside the bracket's middle half (so it shrinks by >= 1/4 a step: bisection's
guarantee; gdws.fast.capacity_search). An allocation already timed is not timed again. Stops: a ratio in
[r, r (1 + OVERSHOOT)] (returned), `max_iters` timings, the cheapest allocation missing r, or a bracket narrower
than BRACKET_TOL (no other allocation in between at the solver's resolution). Else returned: the least-error
allocation that met r, else the fastest measured, each with a warning.

Unreachable. When the tables' cheapest allocation (every candidate at its cheapest option) predicts less than r,
the tables may be pessimistic (above), so that allocation is built and timed first: if it measures >= r the
search goes on from it, else the request is refused (gdws.errors.BadValue: run.py prints it alone). This costs
one timing only when the tables say no.
"""
from __future__ import annotations

import copy
import functools
import statistics
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from gdws.core.allocation import mego_g
from gdws.core.budget import check_speedup
from gdws.errors import BadValue
from gdws.fast.capacity_search import OVERSHOOT, search_capacity
from gdws.fast.latency_table import LayerShape, latency_table
from gdws.fast.mck import solve_mck
from gdws.fast.runtimes import check_runtime
from gdws.fast.select import compiled, optimize_for_inference
from gdws.fast.timing import capture_inputs, time_rounds

GRID_POINTS = 48  # options per layer besides dense: enough that the latency axis, not G, limits the solution


@dataclass
class LayerOptions:
    """The choices of one layer: G per option (None = dense), their table latency (s) and weighted error."""

    G: list[int | None]
    seconds: list[float]
    errors: list[float]


@dataclass
class SpeedupResult:
    """The returned allocation with its evidence: per layer g (None = dense), form and measured seconds."""

    gs: dict[str, Tensor | None]
    forms: dict[str, str] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)
    predicted: dict[str, float] = field(default_factory=dict)
    attrs: dict[str, float] = field(default_factory=dict)
    label: str = "latency"  # the budget's name in convert's report ("kept dense by latency budget")

    @property
    def columns(self) -> dict[str, dict[str, object]]:
        """Report columns for convert: the chosen form, measured and predicted latency (ms) per layer."""
        return {"form": dict(self.forms), "latency_ms": {n: v * 1e3 for n, v in self.measured.items()},
                "predicted_ms": {n: v * 1e3 for n, v in self.predicted.items()}}


def layer_options(scores: Tensor, table: dict, allow_dense: bool = True, scale: float = 1.0,
                  allow_removal: bool = False) -> LayerOptions:
    """Options of one layer from its score matrix [C, r] and latency table (see the module docstring).

    scale multiplies the table's seconds (the ratio of the current to the table's load, see allocate_speedup).
    allow_removal: offer G = 0 (the layer's output becomes its bias). Off by default: a layer's score at G = 0 is an
    extrapolation far outside the range where the scores predict the loss, and the knapsack then removes whole
    layers (chance accuracy on the robust VGG-16, results/cpu/README.md); the floor is one component per layer.
    """
    kept = torch.cumsum(torch.sort(scores.reshape(-1), descending=True).values, 0)
    total = float(kept[-1]) if kept.numel() else 0.0
    top = min(table["G"][-1], kept.numel())
    floor = 0 if allow_removal else min(1, top)
    grid = sorted(g for g in {*(round(top * i / GRID_POINTS) for i in range(GRID_POINTS + 1)), *table["G"]}
                  if floor <= g <= top)
    seconds = [scale * _interp(g, table["G"], table["seconds"]) for g in grid]
    errors = [max(0.0, total - (float(kept[g - 1]) if g > 0 else 0.0)) for g in grid]
    opts = LayerOptions(list(grid), seconds, errors)
    if allow_dense:
        opts.G.append(None)
        opts.seconds.append(scale * float(table["dense_seconds"]))
        opts.errors.append(0.0)
    return opts


def _interp(g: int, xs: list[int], ys: list[float]) -> float:
    """Piecewise-linear interpolation of the measured (G, seconds) points at G = g (xs ascending, g in range)."""
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= g <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (g - x0) / (x1 - x0)
    return ys[-1]


def _paired_speedup(dense: nn.Module, converted: nn.Module, x: Tensor, seconds: float,
                    runtime: str = "torch") -> tuple[float, float, float]:
    """(median dense / converted ratio over interleaved rounds, median dense s, median converted s) on ``runtime``."""
    runs = time_rounds(compiled({"dense": dense, "converted": converted}, x, runtime), x, seconds, rounds=5)
    ratio = statistics.median(d / c for d, c in zip(runs["dense"], runs["converted"]))
    return ratio, statistics.median(runs["dense"]), statistics.median(runs["converted"])


def allocate_speedup(model: nn.Module, scores: dict[str, Tensor], x: Tensor, speedup: float,
                     build: Callable[[dict[str, Tensor | None]], nn.Module], cache_dir=None,
                     allow_dense: bool = True, max_iters: int = 6, min_run_time: float = 0.05,
                     runtime: str = "torch", allow_removal: bool = False) -> SpeedupResult:
    """Least-error allocation whose optimised model measures >= ``speedup`` x faster than the dense one.

    model: the dense eval-mode model on the target device; scores: {candidate layer: score matrix [C, r]};
    x: the example batch on the target device (its batch size is the one optimised for); build(gs): the
    converted model for an allocation {name: g or None}; cache_dir: latency-table cache (None: default,
    False: no cache). runtime: what the tables, the models and the check are timed on (gdws.fast.runtimes: torch,
    onnxruntime, openvino), each model in its fastest exact graph there. allow_removal: let a converted layer have
    G = 0 (see layer_options; by default every converted layer keeps >= 1 component). max_iters: most allocations
    timed by the capacity search (module docstring). Raises gdws.errors.BadValue when the tables say even the
    cheapest choice cannot reach ``speedup`` and timing that choice confirms it.
    """
    inputs, _ = capture_inputs(model, list(scores), x)
    tables = {n: latency_table(LayerShape.of(model.get_submodule(n), inputs[n]), x.device, cache_dir, min_run_time,
                               runtime) for n in scores}
    optimize = functools.partial(optimize_for_inference, runtime=runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no GDWS layers": a dense model gets BN folding and its convs' layout
        # the baseline is the dense model optimised like the converted one (BN folded, layout per conv), so
        # that a requested speed-up is not met by a layout gain the dense model could have as well
        dense = optimize(model, x, min_run_time=min_run_time)
    # T_fixed: the model with every candidate at G = 0 (a constant output), timed in the same rounds as the dense
    # model. The dense layers then take t_dense - t_fixed inside the network, which rescales the isolated tables
    # (measured at another time and with weights hot in cache) to in-network latency.
    floor = optimize(build({n: torch.zeros(s.shape[0], dtype=torch.long) for n, s in scores.items()}),
                     x, min_run_time=min_run_time)
    runs = time_rounds(compiled({"model": dense, "floor": floor}, x, runtime), x, 10 * min_run_time)
    t_dense, t_fixed = (statistics.median(runs[k]) for k in ("model", "floor"))
    scale = max(t_dense - t_fixed, 1e-12) / sum(t["dense_seconds"] for t in tables.values())
    opts = {n: layer_options(scores[n], tables[n], allow_dense, scale, allow_removal) for n in scores}
    names = list(opts)
    cheapest = sum(min(o.seconds) for o in opts.values())
    timed: dict[tuple, tuple[float, SpeedupResult]] = {}  # allocation (G per layer) -> measured ratio, result

    def evaluate(capacity: float) -> tuple[float, SpeedupResult]:
        """Solve the knapsack at ``capacity``; time its allocation unless it was timed already."""
        sol = solve_mck([opts[n].seconds for n in names], [opts[n].errors for n in names], capacity)
        key = tuple(opts[n].G[o] for n, o in zip(names, sol.choice))
        if key in timed:
            return timed[key]
        gs = {n: None if G is None else mego_g(scores[n], G) for n, G in zip(names, key)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the model-level check's notes: its choice is reported below
            opt, report = optimize(build(gs), x, min_run_time=2 * min_run_time, report=True)
        ratio, t_d, t_c = _paired_speedup(dense, opt, x, 10 * min_run_time, runtime)
        rows = report.set_index("name") if len(report) else report  # no GDWS layer: every layer kept dense
        result = SpeedupResult(gs, predicted={n: opts[n].seconds[o] for n, o in zip(names, sol.choice)})
        for n in names:
            if n in rows.index:
                form = rows.loc[n, "chosen"]
                result.forms[n], result.measured[n] = form, float(rows.loc[n, f"t_{form}"])
            else:  # kept dense: the original conv, whose latency the table measured
                result.forms[n], result.measured[n] = "original conv", scale * tables[n]["dense_seconds"]
        result.attrs = {"speedup_requested": speedup, "speedup_measured": ratio, "t_dense_ms": t_d * 1e3,
                        "t_converted_ms": t_c * 1e3, "t_fixed_ms": t_fixed * 1e3, "budget_ms": capacity * 1e3,
                        "speedup_predicted": t_dense / (t_fixed + sol.cost), "error": sol.error, "error_gap": sol.gap,
                        "cost_ms": sol.cost * 1e3, "iterations": len(timed) + 1}
        timed[key] = ratio, result
        return timed[key]

    def calibrated(result: SpeedupResult, target: float) -> float:
        """The capacity giving ``target`` if the converted layers' measured / predicted time stayed as in result."""
        a = result.attrs
        k = max((a["t_converted_ms"] - a["t_fixed_ms"]) / max(a["cost_ms"], 1e-12), 1e-6)
        return (a["t_dense_ms"] / target - a["t_fixed_ms"]) / 1e3 / k

    start = t_dense / speedup - t_fixed
    if start < cheapest:  # the tables say no; they may be pessimistic (module docstring): time the cheapest
        ratio, _ = evaluate(cheapest)
        if ratio < speedup:
            raise BadValue(f"speedup={speedup:g} is unreachable: the latency tables predict at most "
                           f"{t_dense / (t_fixed + cheapest):.3g}x (the layers that are not converted take "
                           f"{t_fixed * 1e3:.3f} of {t_dense * 1e3:.3f} ms) and the fastest allocation measured "
                           f"{ratio:.3g}x on {runtime}; ask for less or include more layers")
        start = cheapest
    tried = search_capacity(evaluate, calibrated, speedup, start, cheapest, sum(max(o.seconds) for o in opts.values()),
                            max_iters, lambda: len(timed))
    return _choose(tried, speedup, len(timed))


def _choose(tried: list[tuple[float, float, SpeedupResult]], speedup: float, timings: int) -> SpeedupResult:
    """The search's answer: the first allocation in the window, else the least-error one that met ``speedup``,
    else the fastest one (each with a warning); its attrs get the number of allocations timed."""
    top = speedup * (1 + OVERSHOOT)
    hit = [res for _, ratio, res in tried if speedup <= ratio <= top]
    met = [res for _, ratio, res in tried if ratio >= speedup]
    if hit:
        best = hit[0]
    elif met:  # every allocation that met r overshot it: the least-error one
        best = min(met, key=lambda res: res.attrs["error"])
        warnings.warn(f"speedup={speedup:g}: no allocation measured in [{speedup:.3g}, {top:.3g}]x after {timings} "
                      f"timings; returning the least-error one that met it ({best.attrs['speedup_measured']:.2f}x)")
    else:
        best = max((res for _, _, res in tried), key=lambda res: res.attrs["speedup_measured"])
        warnings.warn(f"speedup={speedup:g}: the best allocation measured {best.attrs['speedup_measured']:.2f}x "
                      f"after {timings} timings (timing noise, or latency that the per-layer tables do not "
                      "capture); returning it")
    best.attrs["timings"] = timings
    return best


def speedup_allocator(speedup: float, device: torch.device | str | None = None, cache_dir=None,
                      min_run_time: float = 0.05, runtime: str = "torch",
                      allow_removal: bool = False) -> Callable[..., SpeedupResult]:
    """The latency budget as an allocator for gdws.core.convert (its ``allocator=`` argument).

    The returned callable times on ``device`` (default: the example input's), with the example input's batch size,
    against a copy of the dense model moved there; cache_dir, min_run_time, runtime and allow_removal as in
    ``allocate_speedup``.
    """
    speedup = check_speedup(speedup)
    check_runtime(runtime, device or "cpu")

    def allocate(model: nn.Module, scores: dict[str, Tensor], example_input: Tensor,
                 build: Callable[[dict[str, Tensor | None]], nn.Module], allow_dense: bool) -> SpeedupResult:
        dev = torch.device(device) if device is not None else example_input.device
        target = copy.deepcopy(model).eval().to(dev)
        return allocate_speedup(target, scores, example_input.to(dev), speedup, lambda gs: build(gs).eval().to(dev),
                                cache_dir, allow_dense=allow_dense, min_run_time=min_run_time, runtime=runtime,
                                allow_removal=allow_removal)

    return allocate
