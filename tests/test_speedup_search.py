"""The latency budget's capacity search on a fake runtime whose measured speed-up is a known function of the allocation.

The tables are synthetic (latency linear in G, dense at 1 ms) and no model is timed: the whole-network ratio of an
allocation is the tables' prediction P raised to a power (P ** 2.3 mimics OpenVINO, where speedup=1.5 chose an
allocation that measured 2.51x), so each test knows which allocations meet the request.
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gdws.errors import BadValue, Refusal
from gdws.fast import latency_table as latency_table_module
from gdws.fast import speedup as speedup_module
from gdws.fast.capacity_search import OVERSHOOT, search_capacity
from gdws.fast.speedup import allocate_speedup, layer_options
from conftest import as_built

T_FIXED, T_DENSE_LAYER, T_ZERO = 2e-4, 1e-3, 1e-4  # seconds: the rest of the network, a dense conv, a GDWS floor
LAYERS = {"2": (16, 8), "4": (16, 16), "6": (16, 16)}  # the candidates' (out, in) channels


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)).eval()


def _seconds(G: int, top: int) -> float:
    """The synthetic table: linear in G from T_ZERO to 0.9 of the dense conv at the table's largest G."""
    return T_ZERO + (0.9 * T_DENSE_LAYER - T_ZERO) * G / top


class _Allocation(nn.Module):
    """What build() returns here: the allocation itself (the fake runtime reads its G)."""

    def __init__(self, gs: dict) -> None:
        super().__init__()
        self.gs = gs


class _Runtime:
    """Fake tables and timing: measured ratio = ratio(P), P = the tables' predicted speed-up of the allocation."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, ratio) -> None:
        self.ratio, self.timed = ratio, []
        self.top: dict[tuple[int, int], int] = {}  # per (out, in) channels: the table's largest G
        self.tables: dict[tuple[int, int], dict] = {}
        t_dense = T_FIXED + 3 * T_DENSE_LAYER
        monkeypatch.setattr(latency_table_module, "measure_table", self.table)
        monkeypatch.setattr(speedup_module, "optimize_for_inference", as_built)
        monkeypatch.setattr(speedup_module, "time_rounds",
                            lambda modules, x, seconds, rounds=5: {"model": [t_dense] * 5, "floor": [T_FIXED] * 5})
        monkeypatch.setattr(speedup_module, "_paired_speedup", self.paired)

    def table(self, shape, device, min_run_time=0.05, rounds=5, runtime="torch") -> dict:
        grid = shape.grid()
        self.top[shape.out_channels, shape.in_channels] = grid[-1]
        self.tables[shape.out_channels, shape.in_channels] = table = {"G": grid, "seconds": [_seconds(g, grid[-1]) for g in grid], "form": ["straightforward"] * len(grid),
                "dense_seconds": T_DENSE_LAYER, "dense_form": "dense"}
        return table

    def predicted(self, gs: dict) -> float:
        cost = sum(T_DENSE_LAYER if g is None else _seconds(int(g.sum()), self.top[LAYERS[n]]) for n, g in gs.items())
        return (T_FIXED + 3 * T_DENSE_LAYER) / (T_FIXED + cost)

    def paired(self, dense, converted, x, seconds, runtime="torch") -> tuple[float, float, float]:
        q = self.ratio(self.predicted(converted.gs))
        self.timed.append(q)
        t_dense = T_FIXED + 3 * T_DENSE_LAYER
        return q, t_dense, t_dense / q


def _scores() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {n: torch.rand(c_in, 9, generator=gen) + 0.1 for n, (_, c_in) in LAYERS.items()}


def _allocate(speedup: float, **kwargs):
    return allocate_speedup(_net(), _scores(), torch.rand(1, 3, 8, 8), speedup, _Allocation, cache_dir=False,
                            **kwargs)


@pytest.mark.parametrize("speedup", [1.5, 2.0, 2.5])
def test_search_lands_in_the_window_where_the_tables_overshoot(monkeypatch, speedup):
    fake = _Runtime(monkeypatch, lambda p: p ** 2.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a hit warns about nothing
        result = _allocate(speedup)
    assert speedup <= result.attrs["speedup_measured"] <= speedup * (1 + OVERSHOOT)
    assert result.attrs["speedup_measured"] == fake.timed[-1] and len(fake.timed) <= 6
    assert all(g is None or int(g.sum()) >= 1 for g in result.gs.values())  # no layer removed
    first = fake.timed[0]
    assert first > speedup * (1 + OVERSHOOT)  # the tables' own capacity overshoots: the old single solve's answer
    with pytest.warns(UserWarning, match="no allocation measured in"):
        once = _allocate(speedup, max_iters=1)  # one timing, no search: that overshooting allocation
    assert once.attrs["speedup_measured"] == first and once.attrs["error"] > result.attrs["error"]


def test_no_allocation_reaches_the_request_returns_the_fastest_with_a_warning(monkeypatch):
    fake = _Runtime(monkeypatch, lambda p: p ** 0.5)  # the tables promise more than the runtime gives
    with pytest.warns(UserWarning, match="the best allocation measured"):
        result = _allocate(3.0)  # the tables reach 3x; the runtime's best is sqrt(P_max) < 3
    assert result.attrs["speedup_measured"] == max(fake.timed) < 3.0 and len(fake.timed) <= 6
    scores = _scores()  # the cheapest allocation: each layer at its smallest G >= 1
    assert all(int(g.sum()) == min(G for G in layer_options(scores[n], fake.tables[LAYERS[n]]).G if G is not None)
               for n, g in result.gs.items())


def test_unreachable_by_tables_and_by_timing_is_a_refusal(monkeypatch):
    fake = _Runtime(monkeypatch, lambda p: p)
    with pytest.raises(BadValue, match="unreachable") as err:
        _allocate(8.0)
    assert isinstance(err.value, Refusal) and isinstance(err.value, ValueError)
    assert len(fake.timed) == 1  # only the cheapest allocation was timed, and it measured below the request
    assert "measured " in str(err.value) and f"{fake.timed[0]:.3g}x" in str(err.value)


def test_pessimistic_tables_do_not_refuse_what_the_runtime_reaches(monkeypatch):
    fake = _Runtime(monkeypatch, lambda p: p ** 2.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = _allocate(8.0)  # beyond the tables' 5.7x, within the runtime's reach
    assert 8.0 <= result.attrs["speedup_measured"] <= 8.8 and fake.timed[0] > 8.8  # the cheapest one overshot


def test_a_jump_across_the_window_returns_the_least_error_allocation_that_met_the_request(monkeypatch):
    fake = _Runtime(monkeypatch, lambda p: 2.0 if p >= 1.4 else 1.2)  # no allocation measures in [1.5, 1.65]
    with pytest.warns(UserWarning, match="no allocation measured in"):
        result = _allocate(1.5)
    assert result.attrs["speedup_measured"] == 2.0 and len(fake.timed) <= 6
    met = fake.predicted(result.gs)
    assert 1.4 <= met <= 1.4 * 1.05  # the bracket closed on the jump


def test_search_capacity_on_a_continuous_ratio():
    """The pure search: ratio(c) = (T / (f + c)) ** 2 against the table model T / (f + c); a hit within 3 timings."""
    f, t = 0.2, 3.2
    calls = []

    def ratio(c: float) -> float:
        return (t / (f + c)) ** 2

    def evaluate(c: float) -> tuple[float, float]:
        calls.append(c)
        return ratio(c), c

    def calibrated(c: float, target: float) -> float:  # the table model rescaled by measured / predicted time
        return (t / target - f) / ((t / ratio(c) - f) / c)

    steps = search_capacity(evaluate, calibrated, 1.5, t / 1.5 - f, 0.3, 3.0, 10, lambda: len(calls))
    assert steps[0][0] == calls[0] == t / 1.5 - f and ratio(calls[0]) > 1.65  # the tables' capacity overshoots
    assert 1.5 <= steps[-1][1] <= 1.65 and len(calls) <= 3
    assert search_capacity(evaluate, calibrated, 50.0, 0.3, 0.3, 3.0, 10, lambda: 0)[-1][0] == 0.3  # cheapest misses
