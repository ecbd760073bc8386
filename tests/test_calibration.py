"""Data-aware GDWS: the whitened decomposition, its exact error, the closed-form refit and bad calibration input."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gdws
from gdws.core.allocation import Decomposition, lego_g
from gdws.core.calibration import input_second_moments
from gdws.core.refit import output_at, refit_pointwise
from gdws.models import create_model
from bn_stats import randomize_bn


def correlated_input(n: int, c: int, hw: int, seed: int = 0) -> torch.Tensor:
    """Non-zero-mean, spatially and cross-channel correlated inputs (a smoothed random mix plus an offset)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, hw, hw, generator=gen)
    x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # spatial correlation
    mix = torch.randn(c, c, generator=gen) / c ** 0.5 + torch.eye(c)
    return torch.einsum("dc,nchw->ndhw", mix, x) + torch.linspace(0.5, 2.0, c)[None, :, None, None]


def conv_net(conv: nn.Conv2d) -> nn.Module:
    """A one-conv 'network' whose conv is a conversion candidate (the first conv is skipped by default)."""
    return nn.Sequential(conv)


def channel_contribution_mse(conv: nn.Conv2d, delta: torch.Tensor, x: torch.Tensor, c: int) -> float:
    """Mean over samples and positions of ||(W_c - What_c) p_c||^2: channel c's share of the output error."""
    d = torch.zeros_like(conv.weight, dtype=torch.float64)
    d[:, c] = delta[:, c]
    out = F.conv2d(x.double(), d, None, conv.stride, conv.padding, conv.dilation)
    return float(out.square().sum(1).mean())


def test_identity_second_moment_is_todays_decomposition_kernel_for_kernel() -> None:
    w = torch.randn(6, 5, 3, 3, dtype=torch.float64)
    plain = Decomposition(w)
    white = Decomposition(w, second_moment=torch.eye(9, dtype=torch.float64).expand(5, 9, 9), ridge=0.0)
    g = torch.tensor([0, 1, 3, 6, 2])
    a, b = plain.plan(g), white.plan(g)
    torch.testing.assert_close(a.depthwise, b.depthwise, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.pointwise, b.pointwise, rtol=0, atol=1e-12)
    torch.testing.assert_close(plain.scores, white.scores, rtol=1e-12, atol=1e-12)


def test_convert_without_whitening_keeps_the_weight_only_kernels() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)).eval()
    images = torch.rand(16, 3, 8, 8)
    ref, ref_report = gdws.convert(net, macs_ratio=1.5, input_size=(3, 8, 8))
    out, report = gdws.convert(net, macs_ratio=1.5, input_size=(3, 8, 8), calibration=images, whiten=False,
                               refit=False)
    assert report["G"].tolist() == ref_report["G"].tolist()
    assert_same_weights(ref, out)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (1, 0, 1)])
def test_whitened_score_is_the_measured_output_error_of_each_channel(stride, padding, dilation) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 7, 3, stride, padding, dilation, bias=False).double()
    x = correlated_input(64, 4, 9).double()
    s = input_second_moments(conv_net(conv), ["0"], x)["0"]
    dec = Decomposition(conv.weight.detach(), second_moment=s, ridge=0.0)
    g = torch.tensor([1, 2, 0, 4])
    plan = dec.plan(g)
    delta = conv.weight.detach() - plan.weight_hat()
    for c in range(4):
        predicted = float(dec.scores[c, g[c]:].sum())
        measured = channel_contribution_mse(conv, delta, x, c)
        assert predicted == pytest.approx(measured, rel=1e-6)
    assert plan.error == pytest.approx(float(dec.scores[torch.arange(dec.rank)[None] >= g[:, None]].sum()), rel=1e-12)


def test_whitened_lego_is_optimal_for_the_summed_output_error_by_brute_force() -> None:
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 3, 2, bias=False).double()  # rank min(M, k) = 3 per channel: 4^3 allocations
    x = correlated_input(32, 3, 6, seed=3).double()
    s = input_second_moments(conv_net(conv), ["0"], x)["0"]
    dec = Decomposition(conv.weight.detach(), second_moment=s, ridge=0.0)

    def measured(g: torch.Tensor) -> float:
        """Total output error of the plan, measured by running both convs (cross terms included: the sum of the
        per-channel errors is what LEGO bounds, so compare that)."""
        delta = conv.weight.detach() - dec.plan(g).weight_hat()
        return sum(channel_contribution_mse(conv, delta, x, c) for c in range(3))

    errors = {g: measured(torch.tensor(g)) for g in itertools.product(range(4), repeat=3)}
    total = errors[(0, 0, 0)]
    for beta in torch.linspace(0, total, 9).tolist():
        g = lego_g(dec.scores, beta)
        feasible = [sum(k) for k, e in errors.items() if e <= beta * (1 + 1e-9) + 1e-12]
        assert int(g.sum()) == min(feasible)
        assert errors[tuple(g.tolist())] <= beta * (1 + 1e-9) + 1e-12
    # per channel, the whitened truncation beats the weight-only truncation in the output metric
    plain = Decomposition(conv.weight.detach())
    for g in [(1, 1, 1), (2, 1, 0), (1, 2, 2)]:
        delta_plain = conv.weight.detach() - plain.plan(torch.tensor(g)).weight_hat()
        ours = errors[g]
        theirs = sum(channel_contribution_mse(conv, delta_plain, x, c) for c in range(3))
        assert ours <= theirs * (1 + 1e-9)


def assert_same_weights(a: nn.Module, b: nn.Module, **tolerances) -> None:
    """Every tensor of the two state_dicts equal within the tolerances (exactly, when none are given)."""
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(p, q, msg=name, **(tolerances or {"rtol": 0, "atol": 0}))


def _two_layer(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 10, 3, stride=2, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def _layer_mse(original: nn.Module, converted: nn.Module, name: str, x: torch.Tensor) -> float:
    from gdws.core.refit import output_at
    with torch.no_grad():
        y = output_at(original, original.get_submodule(name), x)
        z = output_at(converted, converted.get_submodule(name), x)
    return float((y - z).square().sum())


def test_refit_never_increases_a_layers_calibration_error() -> None:
    net = _two_layer()
    x = torch.rand(40, 3, 8, 8)
    for ratio in (1.3, 2.0, 3.0):  # fisher=False: the unweighted allocation converts both layers at every ratio
        plain, _ = gdws.convert(net, macs_ratio=ratio, input_size=(3, 8, 8), calibration=x, refit=False, fisher=False)
        fitted, report = gdws.convert(net, macs_ratio=ratio, input_size=(3, 8, 8), calibration=x, fisher=False)
        conv_rows = report[report["converted"]]
        assert len(conv_rows) == 2
        assert (conv_rows["calib_err_after"] <= conv_rows["calib_err_before"]).all()
        # the first converted layer sees the original input: its measured error can only go down
        first = conv_rows["name"].iloc[0]
        assert _layer_mse(net, fitted, first, x) <= _layer_mse(net, plain, first, x) * (1 + 1e-6)


def test_refit_at_full_rank_reproduces_the_original_layer() -> None:
    net = _two_layer(1)
    x = torch.rand(48, 3, 8, 8)
    converted, report = gdws.convert(net, max_channels=10_000, input_size=(3, 8, 8), calibration=x, force=True)
    # perturb the pointwise stages, then refit: the closed form must recover the original function
    for m in converted.modules():
        if isinstance(m, gdws.GDWSConv2d):
            with torch.no_grad():
                m.pointwise.weight.mul_(1.3).add_(0.05)
    names = report.loc[report["converted"], "name"].tolist()
    stats = refit_pointwise(net, converted, names, x, ridge=0.0)
    assert all(s.after < 1e-9 for s in stats.values())
    test = torch.rand(8, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(converted(test), net(test), rtol=1e-4, atol=1e-4)


def test_streaming_refit_equals_the_one_batch_solution() -> None:
    net = _two_layer(2)
    x = torch.rand(50, 3, 8, 8)
    a, _ = gdws.convert(net, macs_ratio=2.0, input_size=(3, 8, 8), calibration=x, batch_size=7)
    b, _ = gdws.convert(net, macs_ratio=2.0, input_size=(3, 8, 8), calibration=x, batch_size=50)
    assert_same_weights(a, b, rtol=1e-5, atol=1e-6)


def test_a_dead_input_channel_gives_finite_weights_and_costs_no_error() -> None:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1)).eval()
    with torch.no_grad():  # channels 0 and 1 of the first conv's output are always 0 (dead ReLU), 2 constant
        net[0].weight[:3] = 0
        net[0].bias[:2] = -1.0
        net[0].bias[2] = 0.7
    x = torch.rand(20, 3, 6, 6)
    s = input_second_moments(net, ["2"], x)["2"]
    dec = Decomposition(net[2].weight.detach(), second_moment=s)
    assert torch.all(dec.scores[:2] == 0) and torch.isfinite(dec.scores).all()
    converted, report = gdws.convert(net, macs_ratio=1.5, input_size=(3, 6, 6), calibration=x)
    assert all(torch.isfinite(t).all() for t in converted.state_dict().values() if t.is_floating_point())
    layer = converted.get_submodule("2")
    assert int(layer.g[0]) == 0 and int(layer.g[1]) == 0  # nothing is spent on a channel that is always zero


def test_calibrated_conversion_of_a_resnet_with_alphas_and_the_implicit_form() -> None:
    model = create_model("resnet20", width=0.5).eval()
    x = torch.rand(24, 3, 32, 32)
    alphas = {n: torch.rand(m.in_channels) + 0.5 for n, m in model.named_modules()
              if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)}
    alphas.pop("conv1")
    explicit, report = gdws.convert(model, macs_ratio=2.0, alphas=alphas, calibration=x, exclude=["layer3.2.*"])
    implicit, _ = gdws.convert(model, macs_ratio=2.0, alphas=alphas, calibration=x, exclude=["layer3.2.*"],
                               implicit=True)
    assert report.attrs["macs_total_before"] / report.attrs["macs_total_after"] >= 2.0
    assert report.loc[report["converted"], "calib_err_after"].notna().all()
    assert not any(isinstance(m, gdws.GDWSConv2d) for m in implicit.modules())
    test = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(implicit(test), explicit(test), rtol=1e-4, atol=1e-4)


def test_calibration_from_a_dataloader_equals_the_tensor() -> None:
    net = _two_layer(4)
    x = torch.rand(30, 3, 8, 8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(30)), batch_size=8)
    a, _ = gdws.convert(net, macs_ratio=2.0, input_size=(3, 8, 8), calibration=x)
    b, _ = gdws.convert(net, macs_ratio=2.0, input_size=(3, 8, 8), calibration=loader)
    assert_same_weights(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("calibration,message", [
    (torch.rand(0, 3, 8, 8), "empty"),
    ([], "empty"),
    (torch.rand(4, 1, 8, 8), "shape"),
    (torch.rand(4, 3, 16, 16), "shape"),
    (torch.full((4, 3, 8, 8), float("nan")), "NaN"),
    ([torch.rand(4, 3, 8, 8), torch.tensor([[[[float("inf")]]]]).expand(2, 3, 8, 8)], "NaN"),
    ("images.pt", "tensor"),
])
def test_bad_calibration_fails_before_any_forward_pass(calibration, message) -> None:
    net = _two_layer()
    calls = []
    net.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=message):
        gdws.convert(net, macs_ratio=2.0, input_size=(3, 8, 8), calibration=calibration)
    assert not calls


def test_output_weighted_score_is_the_kfac_quadratic_form_and_identity_changes_nothing() -> None:
    torch.manual_seed(5)
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    x = correlated_input(32, 4, 7, seed=6).double()
    conv = nn.Conv2d(4, 5, 3, padding=1, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(w)
    s = input_second_moments(conv_net(conv), ["0"], x)["0"]
    a = torch.randn(5, 5, dtype=torch.float64)
    fisher = a @ a.T + 0.1 * torch.eye(5, dtype=torch.float64)  # a full, correlated output factor
    dec = Decomposition(w, second_moment=s, ridge=0.0, output_moment=fisher)
    g = torch.tensor([1, 3, 0, 2])
    delta = w - dec.plan(g).weight_hat()
    for c in range(4):
        d = delta[:, c].reshape(5, 9)
        assert float(dec.scores[c, g[c]:].sum()) == pytest.approx(float(torch.trace(fisher @ d @ s[c] @ d.T)),
                                                                   rel=1e-8)
    same = Decomposition(w, second_moment=s, ridge=0.0, output_moment=torch.eye(5, dtype=torch.float64))
    plain = Decomposition(w, second_moment=s, ridge=0.0)
    torch.testing.assert_close(same.plan(g).weight_hat(), plain.plan(g).weight_hat())
    torch.testing.assert_close(same.scores, plain.scores)


def test_fisher_weighted_conversion_runs_on_a_resnet_and_touches_no_gradient() -> None:
    model = create_model("resnet20", width=0.25).eval()
    x = torch.rand(16, 3, 32, 32)
    converted, report = gdws.convert(model, macs_ratio=2.0, calibration=x, fisher=True)
    assert report.attrs["macs_total_before"] / report.attrs["macs_total_after"] >= 2.0
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.isfinite(t).all() for t in converted.state_dict().values() if t.is_floating_point())


def test_the_one_pass_statistics_equal_the_two_passes() -> None:
    from gdws.core.calibration import layer_statistics, output_gradient_moments

    model, x = create_model("resnet20", width=0.25).eval(), torch.rand(12, 3, 32, 32)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)][1:]
    moments, curvature = layer_statistics(model, names, x, 5, whiten=True, fisher=True)
    want_moments, want_curvature = input_second_moments(model, names, x, 5), output_gradient_moments(model, names, x, 5)
    for n in names:
        torch.testing.assert_close(moments[n], want_moments[n], rtol=1e-12, atol=0)
        torch.testing.assert_close(curvature[n], want_curvature[n], rtol=1e-12, atol=0)


def _block_input_and_output(model: nn.Module, block: nn.Module, x: torch.Tensor) -> tuple:
    """(input, pre-ReLU output bn2(conv2(.)) + shortcut(input)) of a CIFAR ResNet basic block."""
    seen = {}
    hooks = [block.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0])),
             block.bn2.register_forward_hook(lambda m, i, o: seen.setdefault("main", o))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen["x"], seen["main"] + block.shortcut(seen["x"])


def test_the_residual_target_refits_a_blocks_second_conv_to_the_blocks_output() -> None:
    model = randomize_bn(create_model("resnet20", width=0.5).eval(), 0.2, (0.5, 1.5))
    x = torch.rand(32, 3, 32, 32)
    kw = dict(macs_ratio=2.5, calibration=x, fisher=False, progress=False)
    plain, _ = gdws.convert(model, residual_target=False, **kw)
    fitted, report = gdws.convert(model, **kw)  # the default where the sequential refit runs
    name = "layer1.1.conv2"  # its block's input already carries the error of the converted block before it
    assert report.set_index("name").loc[name, "converted"]
    x_orig, want = _block_input_and_output(model, model.layer1[1], x)
    errors = {}
    for label, net in (("plain", plain), ("residual", fitted)):
        _, got = _block_input_and_output(net, net.layer1[1], x)
        errors[label] = float((got - want).square().sum())
    # the block's first conv and everything before it are fitted alike; its second conv then minimises the
    # block's output error (least squares), which the plain target does not
    assert errors["residual"] < errors["plain"]
    bn = model.layer1[1].bn2
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    x_conv, got = _block_input_and_output(fitted, fitted.layer1[1], x)
    with torch.no_grad():  # the target: the conv's output plus the shortcut's error divided by the BN scale
        shortcut = model.layer1[1].shortcut
        error = (shortcut(x_orig) - shortcut(x_conv)) / scale[:, None, None]
        target = output_at(model, model.layer1[1].conv2, x) + error
    # the reported error is relative to it: ||(block output error) / a||^2 / ||target||^2
    measured = float(((want - got) / scale[:, None, None]).square().sum() / target.square().sum())
    assert report.set_index("name").loc[name, "calib_err_after"] == pytest.approx(measured, rel=1e-3)


def test_batchnorm_recalibration_gives_the_converted_networks_own_statistics() -> None:
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = torch.rand(32, 3, 8, 8)
    converted, report = gdws.convert(net, macs_ratio=2.0, input_size=(3, 8, 8), calibration=x, batch_size=32,
                                     bn_recalibration=True, progress=False)
    assert report.attrs["calibration_bn_recalibrated"] == 1 and not converted.training
    with torch.no_grad():
        z = converted[2](converted[1](converted[0](x)))  # the BatchNorm's input in the converted network
    bn = converted[3]
    torch.testing.assert_close(bn.running_mean, z.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, z.var((0, 2, 3), unbiased=True), rtol=1e-5, atol=1e-6)
    assert bn.momentum == net[3].momentum
    torch.testing.assert_close(net[3].running_var, torch.ones(8))  # the original is untouched


def test_the_normal_equations_from_float32_batches_match_float64_to_float32_rounding() -> None:
    from gdws.core.refit import Moments

    gen = torch.Generator().manual_seed(7)
    # post-ReLU-like features: a large mean beside a small spread, where uncentred float32 sums lose digits
    batches = [(torch.rand(16, 6, 8, 8, generator=gen) * 0.1 + 5.0, torch.randn(16, 4, 8, 8, generator=gen) + 2.0)
               for _ in range(3)]
    moments = Moments(6, 4)
    for z, y in batches:
        moments.add(z, y)
    z = torch.cat([b[0] for b in batches]).double().permute(0, 2, 3, 1).reshape(-1, 6)
    z = torch.cat([z, torch.ones(z.shape[0], 1, dtype=torch.float64)], 1)
    y = torch.cat([b[1] for b in batches]).double().permute(0, 2, 3, 1).reshape(-1, 4)
    torch.testing.assert_close(moments.gram, z.T @ z, rtol=1e-7, atol=0)
    torch.testing.assert_close(moments.cross, z.T @ y, rtol=1e-6, atol=1e-6 * float((z.T @ y).abs().max()))
    assert moments.target_sq == pytest.approx(float(y.square().sum()), rel=1e-7)
    # the centred part, which sets the solution, to float32 precision of the spread (not of the mean)
    centred = z[:, :6] - z[:, :6].mean(0)
    torch.testing.assert_close(moments.gram[:6, :6] - moments.gram[:6, 6:7] @ moments.gram[6:7, :6] / z.shape[0],
                               centred.T @ centred, rtol=1e-4, atol=1e-6 * float((centred.T @ centred).abs().max()))


@pytest.mark.parametrize("features", [5, 700, 1300])
def test_the_blocked_gram_is_the_full_product(features) -> None:
    from gdws.core.refit import _gram

    a = torch.randn(300, features, dtype=torch.float64)
    torch.testing.assert_close(_gram(a), a.T @ a, rtol=1e-12, atol=1e-9)
