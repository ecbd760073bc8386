"""The alternating (depthwise + pointwise) least-squares refit: exact against brute force, never worse than the
pointwise refit, bookkeeping equal to the measured error, and its option checked before any work
(the pipeline's check: tests/test_calibration_pipeline.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gdws
from gdws.core.alphas import unfold_input
from gdws.core.refit import _current, output_at
from gdws.core import refit_alternating
from gdws.core.refit_alternating import (_depthwise_joint, _depthwise_sweep, patch_moments,
                                             refit_layer_alternating)


def _single(conv: nn.Conv2d) -> nn.Module:
    return nn.Sequential(nn.Identity(), conv).eval()


def _converted(net: nn.Module, g: list[int]) -> nn.Module:
    """``net`` with its conv replaced by a GDWS layer of the given g and random weights."""
    layer = gdws.GDWSConv2d(net[1].in_channels, net[1].out_channels, 3, torch.tensor(g), padding=1)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p))
    return _single(layer)


def _brute_force(net: nn.Module, layer: gdws.GDWSConv2d, x: torch.Tensor, w: torch.Tensor):
    """(design matrix, target) with one equation per (sample, position, output o) and the G*9 depthwise taps
    as unknowns, for the pointwise weights and bias w fixed."""
    p, b = w[:-1].T, w[-1]                                                 # [M, G], [M]
    n, c, m = x.shape[0], layer.in_channels, layer.out_channels
    patches = unfold_input(layer, x).double().reshape(n, c, 9, -1)         # [N, C, 9, P]
    per_g = patches[:, layer.index]                                        # [N, G, 9, P]
    design = p[None, :, :, None, None] * per_g[:, None]                    # [N, M, G, 9, P]
    design = design.permute(0, 4, 1, 2, 3).reshape(-1, layer.num_intermediate * 9)
    with torch.no_grad():
        y = output_at(net, net[1], x).double().permute(0, 2, 3, 1).reshape(-1) - b.repeat(n * patches.shape[-1])
    return design, y


@pytest.mark.parametrize("channels, g, sweeps", [(1, [3], 1), (3, [2, 1, 1], 200)])
def test_depthwise_sweeps_reach_the_least_squares_solution_by_brute_force(channels, g, sweeps) -> None:
    # one input channel: one sweep is the joint least-squares solve; several: block Gauss-Seidel sweeps lower
    # the error at every sweep and converge to it
    torch.manual_seed(0)
    net = _single(nn.Conv2d(channels, 4, 3, padding=1))
    layer = _converted(net, g)[1]
    x = torch.rand(6, channels, 5, 5) + torch.linspace(0, 1, channels)[None, :, None, None]  # non-zero mean
    u, v, _ = patch_moments(net, _single(layer), "1", x)
    w = _current(layer)
    design, y = _brute_force(net, layer, x, w)
    best = torch.linalg.lstsq(design, y[:, None]).solution.reshape(-1, 9)
    d = layer.depthwise.weight.detach().double().reshape(-1, 9)
    errors = []
    for _ in range(sweeps):
        d = _depthwise_sweep(d, w, u, v, layer.index, 9, ridge=0.0)
        errors.append(float((design @ d.reshape(-1) - y).square().sum()))
    assert all(b <= a * (1 + 1e-12) for a, b in zip(errors, errors[1:]))
    torch.testing.assert_close(d, best, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(_depthwise_joint(w, u, v, layer.index, 9, ridge=0.0), best, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("joint_limit", [refit_alternating.JOINT_LIMIT, 0])  # joint solves, then sweeps only
def test_rounds_recover_a_layer_that_the_pointwise_refit_cannot(joint_limit, monkeypatch) -> None:
    # a conv whose every input channel has rank 1 is exactly a GDWS layer with g = 1: with wrong depthwise
    # kernels the pointwise refit alone stays off, the alternating rounds find the layer again
    monkeypatch.setattr(refit_alternating, "JOINT_LIMIT", joint_limit)
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(5, 3, 1, 1) * torch.randn(1, 3, 3, 3))
    net = _single(conv)
    x = torch.randn(16, 3, 6, 6)  # white input: the rounds converge in a few steps (correlated input: slower)
    torch.manual_seed(2)
    alone = refit_layer_alternating(net, _converted(net, [1, 1, 1]), "1", x, rounds=0, ridge=0.0)
    torch.manual_seed(2)
    converted = _converted(net, [1, 1, 1])
    both = refit_layer_alternating(net, converted, "1", x, rounds=30, ridge=0.0)
    assert both.applied and alone.applied
    assert alone.after > 0.1 and both.after < 1e-10
    with torch.no_grad():
        torch.testing.assert_close(converted(x), net(x), rtol=1e-4, atol=1e-4)


def _two_layer() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(12, 10, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten()).eval()


def test_alternating_refit_beats_the_pointwise_refit_and_reports_the_measured_error() -> None:
    net, x = _two_layer(), torch.rand(40, 3, 8, 8)
    kw = dict(macs_ratio=2.5, input_size=(3, 8, 8), calibration=x)
    _, pointwise = gdws.convert(net, **kw)
    converted, report = gdws.convert(net, refit_rounds=4, **kw)
    rows, base = report[report["converted"]], pointwise[pointwise["converted"]]
    assert len(rows) == 2 and (rows["calib_err_after"] <= rows["calib_err_before"]).all()
    # the first converted layer sees the same input in both: the rounds can only lower its error
    assert rows["calib_err_after"].iloc[0] < base["calib_err_after"].iloc[0]
    with torch.no_grad():  # the error the moments report is the error the converted network makes
        for name, reported in zip(rows["name"], rows["calib_err_after"]):
            y = output_at(net, net.get_submodule(name), x)
            y_hat = output_at(converted, converted.get_submodule(name), x)
            assert float((y - y_hat).square().sum() / y.square().sum()) == pytest.approx(reported, rel=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    ({"refit_rounds": -1}, "non-negative integer"),
    ({"refit_rounds": 1.5}, "non-negative integer"),
    ({"refit_rounds": True}, "non-negative integer"),
    ({"refit_rounds": 2, "refit": False}, "needs a calibration set and refit=True"),
])
def test_bad_refit_rounds_fail_before_any_work(kwargs, message) -> None:
    net = _two_layer()
    with pytest.raises(ValueError, match=message):
        gdws.convert(net, macs_ratio=2.0, input_size=(3, 8, 8), calibration=torch.rand(4, 3, 8, 8), **kwargs)
    with pytest.raises(ValueError, match="needs a calibration set"):
        gdws.convert(net, macs_ratio=2.0, input_size=(3, 8, 8), refit_rounds=1)
