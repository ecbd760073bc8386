"""Search of the knapsack capacity on measured speed-ups (the latency budget's loop, gdws.fast.speedup).

The measured ratio dense / converted falls (up to timing noise) as the capacity grows, in steps: one knapsack
solution holds over a range of capacities. Wanted: the largest capacity whose ratio is still >= r, ideally one in
the window [r, r (1 + OVERSHOOT)]. Steps: downward from the caller's calibration while every try missed; then
secant in (log capacity, log ratio) between the largest capacity that met r and the smallest larger one that
missed, kept inside the bracket's middle half so that it shrinks like bisection. The dearest allocation (capacity
``most``: every layer dense, or at the tables' largest G, which is MAC-neutral) is taken as a miss at 1x without
timing it, so that an overshoot is bracketed at once.
Solves are cheap and repeats are not re-timed (the caller caches), so only ``max_iters`` timings bound the cost.
"""
from __future__ import annotations

import math
from typing import Callable, TypeVar

OVERSHOOT = 0.1  # a measured speed-up up to 10 % above r is accepted; beyond, the budget is relaxed (less error)
STEP_LIMIT = 4.0  # largest factor of one downward step: one noisy timing cannot throw the search across the range
MIN_STEP = 1.05  # smallest factor of one downward step: a calibration that points the wrong way still moves
BRACKET_TOL = 1e-3  # relative width below which a bracket holds no other allocation (the DP uses 8192 bins)
MAX_SOLVES = 48  # evaluations per search, repeats included (a repeat costs one knapsack solve, ~10 ms)

R = TypeVar("R")


def search_capacity(evaluate: Callable[[float], tuple[float, R]], calibrated: Callable[[R, float], float],
                    speedup: float, start: float, cheapest: float, most: float, max_iters: int,
                    timings: Callable[[], int]) -> list[tuple[float, float, R]]:
    """(capacity, measured ratio, result) of every step, in order; the last one ends the search.

    evaluate(capacity): the measured ratio and result of the knapsack's allocation at capacity (>= cheapest);
    calibrated(result, target): the capacity that would give ratio ``target`` if the measured / predicted time of
    result's allocation held; start: the first capacity; cheapest / most: the capacity of the cheapest / dearest
    allocation; timings(): how many allocations were timed so far (stop at max_iters). Stops early on a ratio in
    [speedup, speedup (1 + OVERSHOOT)], on the cheapest allocation missing speedup, or on a bracket narrower than
    BRACKET_TOL.
    """
    top, target = speedup * (1 + OVERSHOOT), speedup * (1 + OVERSHOOT / 2)  # aim mid-window: noise stays inside
    dearest = (most, 1.0, None)  # known without timing: at `most` every layer is dense (or MAC-neutral), ~1x
    tried: list[tuple[float, float, R]] = []
    capacity = start
    for _ in range(MAX_SOLVES):
        ratio, result = evaluate(capacity)
        tried.append((capacity, ratio, result))
        if speedup <= ratio <= top or timings() >= max_iters:
            break
        lo = max((t for t in tried if t[1] >= speedup), key=_capacity, default=None)  # largest capacity that met r
        hi = min((t for t in [*tried, dearest] if t[1] < speedup and (lo is None or t[0] > lo[0])), key=_capacity,
                 default=None)  # the smallest larger one that missed
        if lo is not None:
            if hi is None or hi[0] <= lo[0] * (1 + BRACKET_TOL):  # no other allocation in between
                break
            capacity = secant_step(lo[:2], hi[:2], target)
        else:  # every try missed: tighten the budget, down to the cheapest allocation
            if hi[0] <= cheapest * (1 + BRACKET_TOL):
                break
            capacity = max(cheapest, min(hi[0] / MIN_STEP, max(hi[0] / STEP_LIMIT, calibrated(hi[2], target))))
        if any(capacity == c for c, _, _ in tried):  # no progress possible
            break
    return tried


def _capacity(step: tuple) -> float:
    """The capacity of a (capacity, ratio, result) step."""
    return step[0]


def secant_step(lo: tuple[float, float], hi: tuple[float, float], target: float) -> float:
    """Next capacity between lo (met r) and hi (missed r), both (capacity, ratio): the secant in (log capacity,
    log ratio) to ``target``, kept inside the bracket's middle half (in log capacity)."""
    a, b = math.log(max(lo[0], hi[0] * 1e-6)), math.log(hi[0])  # a capacity of 0 (every layer free) as a tiny one
    slope = (math.log(hi[1]) - math.log(lo[1])) / (b - a)  # < 0: the ratio falls as the budget grows
    x = a + (math.log(target) - math.log(lo[1])) / slope if slope < 0 else (a + b) / 2
    return math.exp(min(b - (b - a) / 4, max(a + (b - a) / 4, x)))
