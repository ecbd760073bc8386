"""Timing on a shared machine: interleaved rounds, paired comparisons, and a choice that is stable under noise.

Each candidate is timed once per round, round robin, so a burst of load from another process hits the
candidates of one round alike; comparing candidates *within* a round (paired ratios) cancels most of it.
A candidate is measurably slower than the fastest when its per-round ratio to the fastest exceeds 1 + tie_tol
in all rounds but at most one (4 of 5): a burst of load that hits one candidate of one round cannot make
that happen, and a form only a few per cent slower almost never passes it. Otherwise it is within noise,
and among the forms within noise of the fastest the simplest (first in the caller's preference order) is
kept: repeated calls return the same choice unless forms are near the tie_tol boundary.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils import benchmark


def time_call(module: Callable, x: torch.Tensor, min_run_time: float) -> benchmark.Measurement:
    """blocked_autorange measurement of ``module(x)`` under inference_mode (the Timer syncs CUDA)."""
    with torch.inference_mode():
        module(x)  # warm-up: oneDNN primitive creation, lazy compilation
        timer = benchmark.Timer("m(x)", globals={"m": module, "x": x}, num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=min_run_time)


def time_rounds(modules: dict[str, Callable], x: torch.Tensor, min_run_time: float,
                rounds: int = 5) -> dict[str, list[float]]:
    """Per-round median seconds of each module on ``x``: ``rounds`` round-robin passes of min_run_time / rounds.

    The order rotates every round so that no candidate always runs right after the same other one.
    """
    keys = list(modules)
    runs: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            runs[key].append(time_call(modules[key], x, min_run_time / rounds).median)
    return runs


@dataclass
class Choice:
    """Outcome of `choose_within_noise`: the kept candidate, the fastest one and the evidence."""

    name: str
    fastest: str
    medians: dict[str, float]  # median over rounds of each candidate's seconds
    ratio: dict[str, float]  # median over rounds of t_candidate / t_fastest (paired by round)
    noise: dict[str, float]  # spread of that ratio over the rounds (max - min, after dropping the extremes)
    tied: list[str]  # candidates within noise (or tie_tol) of the fastest, fastest included


def choose_within_noise(samples: dict[str, list[float]], preference: Sequence[str], tie_tol: float) -> Choice:
    """Keep the first candidate of ``preference`` (simplest first) that is not measurably slower than the fastest.

    samples: per-round seconds of each candidate (from `time_rounds`, so round i of every candidate is paired).
    Candidates missing from ``preference`` rank after it, fastest first. tie_tol: the smallest relative
    difference ever treated as real (noise estimates from few rounds can be too small).
    """
    medians = {k: statistics.median(v) for k, v in samples.items()}
    fastest = min(medians, key=medians.get)
    ratio, noise, tied = {}, {}, []
    for k, v in samples.items():
        per_round = [a / b for a, b in zip(v, samples[fastest])]
        ratio[k] = statistics.median(per_round)
        kept = sorted(per_round)[1:-1] if len(per_round) >= 5 else per_round
        noise[k] = kept[-1] - kept[0]
        if sum(r > 1.0 + tie_tol for r in per_round) < max(1, len(per_round) - 1):
            tied.append(k)
    order = [k for k in preference if k in tied] + sorted((k for k in tied if k not in preference), key=medians.get)
    return Choice(order[0], fastest, medians, ratio, noise, tied)


def capture_inputs(model: nn.Module, names: list[str], x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Real input of each named submodule in one inference forward pass, and the model's output."""
    inputs: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(n).register_forward_pre_hook(
        lambda _m, args, n=n: inputs.__setitem__(n, args[0].detach().clone(memory_format=torch.preserve_format)))
        for n in names]
    try:
        with torch.inference_mode():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return inputs, out
