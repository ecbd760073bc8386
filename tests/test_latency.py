"""Latency budget: the knapsack DP against brute force, layer options from a table, convert(speedup=...) end to end."""
from __future__ import annotations

import itertools
import json
import warnings

import pytest
import torch

from gdws.conversion import convert
from gdws.core.layer import GDWSConv2d
from gdws.fast import latency_table as latency_table_module
from gdws.fast import speedup as speedup_module
from gdws.fast.latency_table import LayerShape, _cache_file, latency_table, spread_g
from gdws.fast.mck import solve_mck
from gdws.fast.speedup import layer_options
from conftest import as_built


def _instance(gen: torch.Generator, integer: bool) -> tuple[list[list[float]], list[list[float]]]:
    layers = int(torch.randint(2, 5, (1,), generator=gen))
    costs, errors = [], []
    for _ in range(layers):
        n = int(torch.randint(1, 6, (1,), generator=gen))
        c = torch.randint(0, 20, (n,), generator=gen).double() if integer else 20 * torch.rand(n, generator=gen,
                                                                                              dtype=torch.float64)
        costs.append(c.tolist())
        errors.append((10 * torch.rand(n, generator=gen, dtype=torch.float64)).tolist())
    return costs, errors


def _brute(costs, errors, capacity) -> float:
    best = float("inf")
    for pick in itertools.product(*(range(len(c)) for c in costs)):
        if sum(c[o] for c, o in zip(costs, pick)) <= capacity:
            best = min(best, sum(e[o] for e, o in zip(errors, pick)))
    return best


def test_dp_equals_brute_force_on_integer_costs():
    gen = torch.Generator().manual_seed(0)
    solved = 0
    for _ in range(100):
        costs, errors = _instance(gen, integer=True)
        capacity = int(torch.randint(0, 60, (1,), generator=gen))
        best = _brute(costs, errors, capacity)
        if best == float("inf"):
            with pytest.raises(ValueError, match="below the cheapest"):
                solve_mck(costs, errors, capacity, bins=max(capacity, 1))
            continue
        sol = solve_mck(costs, errors, capacity, bins=max(capacity, 1))  # one bin per cost unit: exact
        assert sol.error == pytest.approx(best, abs=1e-12) and sol.gap == pytest.approx(0, abs=1e-12)
        assert sol.cost <= capacity
        solved += 1
    assert solved >= 60


def test_dp_on_real_costs_is_feasible_and_certified():
    gen = torch.Generator().manual_seed(1)
    for _ in range(100):
        costs, errors = _instance(gen, integer=False)
        capacity = float(60 * torch.rand(1, generator=gen))
        best = _brute(costs, errors, capacity)
        if best == float("inf"):
            continue
        sol = solve_mck(costs, errors, capacity, bins=256)
        assert sol.cost <= capacity + 1e-9
        assert sol.lower_bound - 1e-9 <= best <= sol.error + 1e-9  # the certificate brackets the optimum
        assert sol.error <= best + sol.gap + 1e-9


def test_layer_options_interpolate_the_table_and_use_mego_errors():
    scores = torch.tensor([[4.0, 1.0], [3.0, 0.5]], dtype=torch.float64)  # sorted: 4, 3, 1, 0.5
    table = {"G": [0, 2, 4], "seconds": [1.0, 3.0, 4.0], "dense_seconds": 3.5}
    opts = layer_options(scores, table, allow_removal=True)
    assert opts.G[-1] is None and opts.seconds[-1] == 3.5 and opts.errors[-1] == 0.0
    by_g = dict(zip(opts.G[:-1], zip(opts.seconds, opts.errors)))
    assert by_g[0] == (1.0, 8.5) and by_g[1] == (2.0, 4.5) and by_g[3] == (3.5, 0.5) and by_g[4] == (4.0, 0.0)
    assert None not in layer_options(scores, table, allow_dense=False).G
    floored = layer_options(scores, table)  # by default a converted layer keeps at least one component
    assert min(g for g in floored.G if g is not None) == 1 and floored.G[:-1] == [g for g in opts.G[:-1] if g]


def test_spread_g_and_shape_grid():
    assert spread_g(4, 6, 9).tolist() == [2, 2, 1, 1] and spread_g(2, 30, 9).tolist() == [9, 9]
    conv = torch.nn.Conv2d(8, 16, 3, padding=1)
    shape = LayerShape.of(conv, torch.zeros(1, 8, 6, 6))
    grid = shape.grid()
    assert grid[0] == 0 and grid == sorted(set(grid)) and grid[-1] <= shape.max_g == 72


def test_latency_table_is_measured_once_per_shape(tmp_path, one_thread):
    conv = torch.nn.Conv2d(4, 6, 3, padding=1)
    shape = LayerShape.of(conv, torch.zeros(1, 4, 5, 5))
    first = latency_table(shape, "cpu", tmp_path, min_run_time=0.001)
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1 and first["G"] == shape.grid() and len(first["seconds"]) == len(first["G"])
    assert first["form"][0] == "zero" and first["dense_form"] in ("dense", "dense_cl")
    data = json.loads(files[0].read_text())
    data["seconds"] = [7.0] * len(data["seconds"])  # a cached table is read back, not measured again
    files[0].write_text(json.dumps(data))
    assert latency_table(shape, "cpu", tmp_path)["seconds"][0] == 7.0
    other = LayerShape.of(conv, torch.zeros(2, 4, 5, 5))  # another batch size is another table
    assert _cache_file(tmp_path, other, torch.device("cpu")) != files[0]


class _Small(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.a, self.b = torch.nn.Conv2d(16, 64, 3, padding=1), torch.nn.Conv2d(64, 64, 3, padding=1)
        self.fc = torch.nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.b(torch.relu(self.a(torch.relu(self.stem(x))))).mean((2, 3)))


def test_convert_speedup_end_to_end_on_synthetic_tables(tmp_path, monkeypatch, one_thread):
    """Tables are synthetic (latency linear in G, dense at 1 ms); selection and verification are real."""
    def fake_table(shape, device, min_run_time=0.05, rounds=5, runtime="torch"):
        return {"G": shape.grid(), "seconds": [1e-5 * (1 + g) for g in shape.grid()], "form": ["straightforward"]
                * len(shape.grid()), "dense_seconds": 1e-3, "dense_form": "dense"}

    monkeypatch.setattr(latency_table_module, "measure_table", fake_table)
    torch.manual_seed(0)
    model, x = _Small().eval(), torch.rand(1, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missed target on this tiny, noisy model only warns
        converted, report = convert(model, speedup=1.2, example_input=x, latency_cache=tmp_path,
                                    latency_time=0.002)
    attrs = report.attrs
    assert attrs["speedup_requested"] == 1.2 and attrs["speedup_measured"] > 0 and attrs["error_gap"] >= 0
    cands = report[report["name"].isin(["a", "b"])]
    assert cands["form"].notna().all() and (cands["latency_ms"] > 0).all()
    assert (cands["converted"] | (cands["reason"] == "kept dense by latency budget")).all()
    assert len(list(tmp_path.rglob("*.json"))) == 2
    with torch.no_grad():
        assert converted(x).shape == model(x).shape
    with pytest.raises(ValueError, match="speedup must be"):
        convert(model, speedup=1.0)
    with pytest.raises(ValueError, match="unreachable"):
        convert(model, speedup=1000.0, example_input=x, latency_cache=tmp_path, latency_time=0.002)


def test_the_budget_with_calibration_never_removes_a_layer_unless_allowed(tmp_path, monkeypatch, one_thread):
    """Synthetic tables, and a runtime that agrees with them, where G = 0 is free and any G >= 1 costs 0.9 of the
    dense conv: speedup=1.5 is reachable only by removing layers. By default the budget refuses (never G = 0);
    allow_removal=True removes layers. The whole-network check is the tables' own prediction (not a real timing,
    which on this tiny model measured anywhere in 1.07-1.64x and made the outcome depend on the machine's load)."""
    def fake_table(shape, device, min_run_time=0.05, rounds=5, runtime="torch"):
        grid = shape.grid()
        return {"G": grid, "seconds": [0.0 if g == 0 else 0.9e-3 + 1e-9 * g for g in grid],
                "form": ["straightforward"] * len(grid), "dense_seconds": 1e-3, "dense_form": "dense"}

    def layer_seconds(m: torch.nn.Module) -> float:
        if isinstance(m, GDWSConv2d):
            return 0.0 if m.num_intermediate == 0 else 0.9e-3
        return 1e-3  # kept dense

    def paired(dense, converted, x, seconds, runtime="torch") -> tuple[float, float, float]:
        t_dense = 0.2e-3 + 2e-3  # the rest of the network, and layers a and b dense
        t = 0.2e-3 + sum(layer_seconds(converted.get_submodule(n)) for n in ("a", "b"))
        return t_dense / t, t_dense, t

    monkeypatch.setattr(latency_table_module, "measure_table", fake_table)
    monkeypatch.setattr(speedup_module, "optimize_for_inference", as_built)  # GDWS layers readable by paired()
    monkeypatch.setattr(speedup_module, "_paired_speedup", paired)
    torch.manual_seed(0)
    model, x = _Small().eval(), torch.rand(1, 3, 16, 16)
    calib = torch.rand(32, 3, 16, 16)
    kwargs = dict(example_input=x, latency_cache=tmp_path, latency_time=0.002, calibration=calib, fisher=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="unreachable"):
            convert(model, speedup=10.0, **kwargs)  # the cheapest allocation (G >= 1 everywhere) measures 1.1x
        _, removed = convert(model, speedup=1.5, allow_removal=True, **kwargs)
        _, kept = convert(model, speedup=1.05, **kwargs)  # reachable (0.9 of dense per layer): no layer removed
    assert (removed["converted"] & (removed["G"] == 0)).any()
    assert kept["converted"].any() and not (kept["converted"] & (kept["G"] == 0)).any()
