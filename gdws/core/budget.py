"""Network-level MAC budget (beyond the paper): spread GDWS components over all layers for a target MAC ratio.

Problem. Layer l (candidate for conversion) has components (c, i) with score s = alpha_c * sigma_{c,i}^2, each
costing w_l = (kh*kw + M) * H'W' MACs, and may instead stay dense at cost D_l with zero error. Choose, per layer,
either dense or a set of components, so that total MACs (including the layers never converted) <= before / r,
minimising the total dropped score (the summed weighted error).

Method (greedy on the convex hull, i.e. the LP relaxation of this multiple-choice knapsack). Per layer, the best
k components are its k largest scores, so kept score T_l(k) is concave in k at a cost of k*w_l. If D_l < n_l*w_l
(dense is cheaper than the full GDWS form) the option (D_l, T_l(n_l)) is added and the upper concave hull is taken:
components 1..k0 (with k0*w_l < D_l), then one 'switch to dense' segment. All segments of all layers are sorted by
profit per MAC and taken greedily while they fit; once a segment of a layer does not fit, that layer stops.
A layer thus ends dense (only when that is cheaper than its GDWS form) or GDWS strictly cheaper than dense.

Optimality gap. Greedy by density solves the LP relaxation exactly up to the first segment that does not fit,
which the LP would take fractionally; every integer choice lies under the hulls, so
    OPT_LP >= OPT  and  kept_greedy >= OPT_LP - p_first,
hence  error_greedy <= error_optimal + p_first,  where p_first is the profit (score) of the first segment that
did not fit (0 if everything fit, in which case greedy is optimal). `allocate_macs` returns p_first.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class BudgetLayer:
    """A conversion candidate: score matrix [C, r] (float64), MACs per component and dense MACs."""

    name: str
    scores: Tensor
    unit_cost: int
    dense_cost: int


def check_macs_ratio(macs_ratio: float) -> float:
    """Validate r (>= 1, finite): total MACs after <= total before / r."""
    if isinstance(macs_ratio, bool) or not isinstance(macs_ratio, numbers.Real) or not math.isfinite(macs_ratio) \
            or macs_ratio < 1:
        raise ValueError(f"macs_ratio must be a finite number >= 1 (the MAC reduction factor: 2 means half the "
                         f"MACs), got {macs_ratio!r}")
    return float(macs_ratio)


def check_speedup(speedup: float) -> float:
    """Validate a latency budget r (finite, > 1): the optimised converted model r times faster than dense."""
    if isinstance(speedup, bool) or not isinstance(speedup, numbers.Real) or not math.isfinite(speedup) \
            or speedup <= 1:
        raise ValueError(f"speedup must be a finite number > 1 (2 means half the dense latency), got {speedup!r}")
    return float(speedup)


def _layer_segments(layer: BudgetLayer, allow_dense: bool) -> tuple[list[tuple[float, float, int]], Tensor]:
    """Hull segments (cost, profit, components-after or -1 for dense) of one layer, and its score order."""
    flat = layer.scores.reshape(-1)
    order = torch.argsort(flat, descending=True, stable=True)
    s = flat[order].tolist()
    w, d, n = layer.unit_cost, layer.dense_cost, len(s)
    cum = [0.0]
    for v in s:
        cum.append(cum[-1] + v)
    total = cum[-1]
    k0, dense = n, allow_dense and d < n * w
    if dense:
        # tangent from the dense point to the concave curve: last k (k*w < D) still strictly above the chord
        k0 = 0
        for k in range(1, min(n, math.ceil(d / w) - 1) + 1):
            if s[k - 1] * (d - k * w) > w * (total - cum[k]):
                k0 = k
    segments = [(float(w), s[i], i + 1) for i in range(k0)]
    if dense:
        segments.append((float(d - k0 * w), total - cum[k0], -1))
    return segments, order


def allocate_macs(layers: list[BudgetLayer], total_before: int, fixed: int, macs_ratio: float,
                  allow_dense: bool = True) -> tuple[dict[str, Tensor | None], float]:
    """Greedy MAC-budget allocation (see module docstring).

    total_before: network MACs before conversion; fixed: MACs of everything that is not a candidate.
    Returns ({name: g LongTensor [C], or None to keep the layer dense}, p_first = the optimality gap bound).
    """
    r = check_macs_ratio(macs_ratio)
    capacity = total_before / r - fixed
    if capacity < 0:
        best = total_before / fixed
        raise ValueError(f"macs_ratio={r:g} is unreachable: the layers that are not converted cost {fixed} of "
                         f"{total_before} MACs, so the largest reachable ratio is {best:.6g}; pass a smaller "
                         "macs_ratio or include more layers")
    items, orders = [], []
    for li, layer in enumerate(layers):
        segs, order = _layer_segments(layer, allow_dense)
        orders.append(order)
        items += [(profit / cost, cost, profit, li, k) for cost, profit, k in segs if profit > 0]
    items.sort(key=lambda t: -t[0])  # stable: equal densities keep each layer's segment order
    taken, dense, blocked = [0] * len(layers), [False] * len(layers), [False] * len(layers)
    used, gap = 0.0, None
    for _, cost, profit, li, k in items:
        if blocked[li]:
            continue
        if used + cost <= capacity:
            used += cost
            if k < 0:
                dense[li] = True
            else:
                taken[li] = k
        else:
            blocked[li] = True
            gap = profit if gap is None else gap
    result = {}
    for li, layer in enumerate(layers):
        c, rank = layer.scores.shape
        chosen = orders[li][:taken[li]] // rank
        result[layer.name] = None if dense[li] else torch.bincount(chosen, minlength=c)
    return result, (gap or 0.0)
