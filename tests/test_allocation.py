"""LEGO / MEGO: optimality against brute-force enumeration, edge cases, bad input."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from gdws.core import lego, mego


def _tails(weight: torch.Tensor, alpha: torch.Tensor) -> np.ndarray:
    """tails[c, k] = alpha_c * sum_{i >= k} sigma_{c,i}^2, from an independent per-channel SVD."""
    m, c, kh, kw = weight.shape
    r = min(m, kh * kw)
    out = np.zeros((c, r + 1))
    for ch in range(c):
        s2 = torch.linalg.svdvals(weight[:, ch].reshape(m, kh * kw)).double().numpy() ** 2
        out[ch, :r] = alpha[ch].item() * np.cumsum(s2[::-1])[::-1]
    return out


def _all_allocations(tails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every g (rows) and its optimal weighted error (Eckart-Young per channel)."""
    c, r1 = tails.shape
    gs = np.array(list(itertools.product(range(r1), repeat=c)))
    return gs, tails[np.arange(c), gs].sum(1)


def _random_instance(gen: torch.Generator):
    c = int(torch.randint(1, 5, (1,), generator=gen))
    k = int(torch.randint(2, 4, (1,), generator=gen))
    m = int(torch.randint(1, 6, (1,), generator=gen))
    w = torch.randn(m, c, k, k, generator=gen, dtype=torch.float64)
    if torch.rand(1, generator=gen) < 0.2:
        w[:, 0] = 0  # an all-zero channel now and then
    alpha = torch.rand(c, generator=gen, dtype=torch.float64) * 2
    if torch.rand(1, generator=gen) < 0.2:
        alpha[-1] = 0
    return w, alpha


def _actual_error(plan, w, alpha) -> float:
    diff = (w - plan.weight_hat()).square().sum((0, 2, 3))
    return float((alpha * diff).sum())


def test_lego_matches_brute_force_on_random_instances():
    gen = torch.Generator().manual_seed(0)
    for _ in range(250):
        w, alpha = _random_instance(gen)
        tails = _tails(w, alpha)
        gs, errs = _all_allocations(tails)
        beta = float(torch.rand(1, generator=gen)) * tails[:, 0].sum() * 1.1
        plan = lego(w, beta, alpha)
        feasible = errs <= beta
        assert plan.error <= beta
        assert int(plan.g.sum()) == gs[feasible].sum(1).min()
        assert plan.error == pytest.approx(_actual_error(plan, w, alpha), rel=1e-9, abs=1e-12)
        assert plan.depthwise.shape == (int(plan.g.sum()), w.shape[2], w.shape[3])
        assert plan.pointwise.shape == (w.shape[0], int(plan.g.sum()))


def test_mego_error_is_brute_force_minimum_for_every_budget():
    gen = torch.Generator().manual_seed(1)
    for _ in range(60):
        w, alpha = _random_instance(gen)
        tails = _tails(w, alpha)
        gs, errs = _all_allocations(tails)
        for g_max in range(gs.sum(1).max() + 1):
            plan = mego(w, g_max, alpha)
            assert int(plan.g.sum()) <= g_max
            best = errs[gs.sum(1) <= g_max].min()
            assert plan.error == pytest.approx(best, rel=1e-9, abs=1e-12)
            assert plan.error == pytest.approx(_actual_error(plan, w, alpha), rel=1e-9, abs=1e-12)


def test_lego_equality_allowed_and_exact_scores():
    w = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    w[0, 0, 0, 0], w[1, 0, 0, 1] = 2.0, 1.0  # sigma^2 = 4 and 1 exactly
    assert lego(w, 1.0).g.tolist() == [1] and lego(w, 1.0).error == 1.0
    assert lego(w, 0.999).g.tolist() == [2]
    assert lego(w, 5.0).g.tolist() == [0] and lego(w, 5.0).error == 5.0  # beta >= total: G = 0


def test_edge_cases_zero_channel_zero_alpha_small_m_k1_nonsquare():
    torch.manual_seed(0)
    w = torch.randn(3, 4, 3, 3, dtype=torch.float64)
    w[:, 1] = 0
    plan = lego(w, 0.0, torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64))
    assert plan.g.tolist() == [3, 0, 0, 3]  # M < K*K: at most M = 3 components; zero channel and alpha 0 dropped
    assert plan.error == 0.0
    k1 = torch.randn(5, 4, 1, 1)
    assert lego(k1, 0.0).g.tolist() == [1, 1, 1, 1]
    ns = torch.randn(6, 2, 2, 3)
    p = mego(ns, 7)
    assert p.depthwise.shape == (7, 2, 3) and p.pointwise.dtype == torch.float32
    assert torch.allclose(lego(ns, 0.0).weight_hat(), ns, atol=1e-5)
    assert mego(torch.zeros(4, 3, 3, 3), 5).g.sum() == 0  # zero scores are never kept


@pytest.mark.parametrize("call, match", [
    (lambda w: lego(w, -1.0), "beta must be"),
    (lambda w: lego(w, float("nan")), "beta must be"),
    (lambda w: lego(w, float("inf")), "beta must be"),
    (lambda w: mego(w, -1), "max_channels must be"),
    (lambda w: mego(w, 2.5), "max_channels must be"),
    (lambda w: lego(w, 0.1, torch.ones(3)), r"alpha must have shape \[2\]"),
    (lambda w: lego(w, 0.1, -torch.ones(2)), "alpha must be finite and >= 0"),
    (lambda w: lego(w, 0.1, torch.tensor([1.0, float("nan")])), "alpha must be finite"),
    (lambda w: lego(w.new_full(w.shape, float("nan")), 0.1), "NaN or inf"),
    (lambda w: lego(w[0], 0.1), r"shape \[M, C, kh, kw\]"),
])
def test_bad_input_raises_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.randn(3, 2, 3, 3))
