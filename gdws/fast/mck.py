"""Multiple-choice knapsack by dynamic programming: pick one option per layer, least total error within a cost budget.

Layer l offers options (cost_lo, error_lo); choose one option per layer so that the summed cost is <= capacity and
the summed error is least. Costs are real (seconds of latency), so the cost axis is discretised into `bins` units
of capacity / bins, and the DP is run twice:

- costs rounded UP: every solution of this DP really fits (each rounded cost is >= the true one), so it is the
  returned choice, optimal among the choices whose rounded-up costs fit;
- costs rounded DOWN: a relaxation (every truly feasible choice fits it), so its optimum is a lower bound on the
  true optimal error.

The returned `gap` = error(choice) - lower bound >= 0 bounds the distance to the true optimum (0: provably
optimal). With integer costs and capacity / bins = 1 both DPs are the exact problem and the gap is 0.
Time and memory: O(layers * options * bins).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class MCKSolution:
    """One option index per layer, its true total cost and error, and the optimality certificate."""

    choice: list[int]
    cost: float
    error: float
    lower_bound: float  # no choice with total cost <= capacity has a smaller total error

    @property
    def gap(self) -> float:
        """error - lower_bound: how far the choice can be from the optimum (0 means optimal)."""
        return max(0.0, self.error - self.lower_bound)


def _dp(weights: list[torch.Tensor], errors: list[torch.Tensor], bins: int) -> tuple[float, list[int]]:
    """Least total error with integer weights summing to <= bins, and the option per layer (backtracked)."""
    best = torch.zeros(bins + 1, dtype=torch.float64)  # no layer yet: error 0 within any budget
    args = []
    for w, e in zip(weights, errors):
        cand = torch.full((len(w), bins + 1), math.inf, dtype=torch.float64)
        for o, (wo, eo) in enumerate(zip(w.tolist(), e.tolist())):
            if wo <= bins:
                cand[o, wo:] = best[:bins + 1 - wo] + eo
        best, arg = cand.min(0)
        args.append(arg)
    if not math.isfinite(float(best[bins])):
        return math.inf, []
    choice, b = [], bins
    for w, arg in zip(reversed(weights), reversed(args)):
        o = int(arg[b])
        choice.append(o)
        b -= int(w[o])
    return float(best[bins]), choice[::-1]


def solve_mck(costs: Sequence[Sequence[float]], errors: Sequence[Sequence[float]], capacity: float,
              bins: int = 8192) -> MCKSolution:
    """Least-error choice of one option per layer with total cost <= capacity (see the module docstring).

    costs, errors: per layer, one value per option (costs >= 0). Raises ValueError when even the cheapest
    options do not fit, naming the smallest total cost reachable.
    """
    if len(costs) != len(errors) or any(len(c) != len(e) or not c for c, e in zip(costs, errors)):
        raise ValueError("costs and errors need the same number of layers and, per layer, of options (>= 1)")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    cheapest = sum(min(c) for c in costs)
    if capacity < 0 or cheapest > capacity:
        raise ValueError(f"the budget {capacity:.6g} is below the cheapest choice ({cheapest:.6g}); ask for less")
    unit = capacity / bins if capacity > 0 else 1.0
    c64 = [torch.as_tensor(c, dtype=torch.float64) / unit for c in costs]
    e64 = [torch.as_tensor(e, dtype=torch.float64) for e in errors]
    # the 1e-9 absorbs float error in cost / unit, so that costs on the grid are not pushed one unit up
    up = [torch.ceil(c - 1e-9).clamp_min(0).long() for c in c64]
    down = [torch.floor(c + 1e-9).clamp_min(0).long() for c in c64]
    error, choice = _dp(up, e64, bins)
    lower, _ = _dp(down, e64, bins)
    if not choice:  # fits in real numbers but not after rounding up: take the cheapest options
        choice = [int(torch.as_tensor(c).argmin()) for c in costs]
        error = sum(float(e[o]) for e, o in zip(errors, choice))
    cost = sum(float(c[o]) for c, o in zip(costs, choice))
    return MCKSolution(choice=choice, cost=cost, error=error, lower_bound=lower)
