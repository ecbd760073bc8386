"""convert(macs_ratio=r): budget respected and error within the stated gap of the exhaustive optimum."""
from __future__ import annotations

import itertools
import re

import pytest
import torch
from torch import nn

from gdws.core import GDWSConv2d, convert


class TwoLayer(nn.Module):
    """A fixed first (1x1) conv, two convertible 2x2 convs (output 5x5 then 4x4), a Linear head."""

    def __init__(self, c: int, m1: int, m2: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 1)
        self.a = nn.Conv2d(c, m1, 2)
        self.b = nn.Conv2d(m1, m2, 2)
        self.fc = nn.Linear(m2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.b(self.a(self.stem(x))).mean((2, 3)))


def _options(conv: nn.Conv2d, alpha: torch.Tensor, pixels: int) -> list[tuple[int, float]]:
    """(MACs, weighted error) of every choice for one layer: every g (optimal kernels) and the dense conv."""
    w = conv.weight.detach().double()
    m, c = w.shape[:2]
    r = min(m, 4)
    tails = []
    for ch in range(c):
        s2 = torch.linalg.svdvals(w[:, ch].reshape(m, 4)) ** 2 * alpha[ch]
        tails.append([float(s2[k:].sum()) for k in range(r + 1)])
    opts = [(m * c * 4 * pixels, 0.0)]
    for g in itertools.product(range(r + 1), repeat=c):
        opts.append(((4 + m) * sum(g) * pixels, sum(t[k] for t, k in zip(tails, g))))
    return opts


def test_greedy_budget_against_exhaustive_search():
    gen = torch.Generator().manual_seed(0)
    checked = exact = nontrivial = 0
    for trial in range(24):
        c, m1, m2 = (int(torch.randint(1, 4, (1,), generator=gen)) for _ in range(3))
        torch.manual_seed(trial)
        net = TwoLayer(c, m1, m2)
        alphas = {"a": torch.rand(c, generator=gen) + 0.1, "b": torch.rand(m1, generator=gen) + 0.1}
        opts_a = _options(net.a, alphas["a"], 25)
        opts_b = _options(net.b, alphas["b"], 16)
        fixed = c * 3 * 36 + m2 * 3
        total = fixed + opts_a[0][0] + opts_b[0][0]
        for ratio in (1 + (total / fixed - 1) * f for f in (0.0, 0.1, 0.3, 0.6, 0.9)):
            converted, report = convert(net, macs_ratio=ratio, alphas=alphas, input_size=(3, 6, 6))
            assert report.attrs["macs_total_before"] == total
            assert report.attrs["macs_total_after"] <= total / ratio
            cap = total / ratio - fixed
            best = min(ea + eb for (ca, ea), (cb, eb) in itertools.product(opts_a, opts_b) if ca + cb <= cap)
            err = float(report["error"].sum())
            gap = report.attrs["macs_ratio_gap"]
            assert best - 1e-9 <= err <= best + gap + 1e-9
            if gap == 0:
                assert err == pytest.approx(best, abs=1e-12)
            exact += abs(err - best) < 1e-12
            checked += 1
            nontrivial += gap > 0 and err > 0
            # the modules really cost what the report says, and no converted layer costs more than dense
            for name, hw in (("a", (5, 5)), ("b", (4, 4))):
                row = report.set_index("name").loc[name]
                layer = converted.get_submodule(name)
                if isinstance(layer, GDWSConv2d):
                    assert layer.macs(hw) == row["macs_after"] < row["macs_before"]
                else:
                    assert row["macs_after"] == row["macs_before"] and row["error"] == 0
    assert checked == 120 and exact >= 60 and nontrivial >= 30  # greedy is usually optimal here; errors > 0 tested


def test_unreachable_and_bad_ratio():
    torch.manual_seed(0)
    net = TwoLayer(2, 2, 2)
    fixed = 2 * 3 * 36 + 2 * 3
    total = fixed + 2 * 2 * 4 * 25 + 2 * 2 * 4 * 16
    with pytest.raises(ValueError, match="largest reachable ratio is") as info:
        convert(net, macs_ratio=total / fixed * 1.01, input_size=(3, 6, 6))
    assert float(re.search(r"ratio is ([0-9.]+)", str(info.value)).group(1)) == pytest.approx(total / fixed, rel=1e-5)
    _, report = convert(net, macs_ratio=total / fixed, input_size=(3, 6, 6))  # reachable exactly: all G = 0
    assert report.attrs["macs_total_after"] == fixed
    for bad in (0.5, float("nan"), -2.0):
        with pytest.raises(ValueError, match="macs_ratio must be"):
            convert(net, macs_ratio=bad, input_size=(3, 6, 6))
