"""convert() on a small CNN: skip rules, report rows and MACs, copy semantics, implicit form, save/load."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gdws.core import GDWSConv2d, convert, load_converted

BETA = 3.0  # the default-init body convs have squared norm ~10.7: this drops enough components to gain MACs


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Sequential(nn.Conv2d(8, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(32, 32, 3, padding="same", padding_mode="reflect"), nn.ReLU())
        self.narrow = nn.Conv2d(32, 2, 3, padding=1, bias=False)  # M = 2: GDWS can never be cheaper
        self.proj = nn.Conv2d(2, 16, 1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.unused = nn.Conv2d(3, 3, 3)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(torch.relu(self.bn(self.stem(x))))
        x = self.dw(self.proj(self.narrow(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture()
def model() -> SmallCNN:
    torch.manual_seed(0)
    m = SmallCNN()
    m.bn.running_mean.uniform_(-0.2, 0.2)
    m.bn.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        m.narrow.weight.mul_(100)  # large scores: a small beta keeps almost all its 64 components
    return m


def test_skip_rules_report_and_macs(model):
    before = copy.deepcopy(model.state_dict())
    model.train()
    converted, report = convert(model, beta=BETA, input_size=(3, 16, 16))
    rows = report.set_index("name")
    assert list(report.columns[:12]) == ["name", "C", "K", "M", "stride", "groups", "G", "error", "macs_before",
                                         "macs_after", "converted", "reason"]
    assert list(report["name"]) == ["stem", "body.0", "body.2", "narrow", "proj", "dw", "unused"]
    assert rows.loc["stem", "reason"] == "first conv"
    assert rows.loc["narrow", "reason"] == "no MAC gain"
    assert rows.loc["proj", "reason"] == "1x1"
    assert rows.loc["dw", "reason"] == "grouped/depthwise"
    assert rows.loc["unused", "reason"] == "not used in forward"
    assert rows.loc["body.0", "converted"] and rows.loc["body.2", "converted"]
    # MACs by hand: body.0 outputs 8x8, body.2 8x8, stem 16x16
    assert rows.loc["stem", "macs_before"] == 8 * 3 * 9 * 16 * 16
    assert rows.loc["body.0", "macs_before"] == 32 * 8 * 9 * 64
    for name in ("body.0", "body.2"):
        assert rows.loc[name, "macs_after"] == (9 + 32) * rows.loc[name, "G"] * 64
        assert 0 < rows.loc[name, "error"] <= BETA
        assert isinstance(converted.get_submodule(name), GDWSConv2d)
        assert int(converted.get_submodule(name).g.sum()) == rows.loc[name, "G"]
    assert rows.loc["dw", "macs_before"] == 16 * 1 * 9 * 64
    assert report.attrs["macs_total_before"] == report["macs_before"].sum() + 16 * 10
    # the original is untouched, mode restored
    assert model.training and isinstance(model.body[0], nn.Conv2d)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_include_exclude_and_force(model):
    _, report = convert(model, beta=0.0, input_size=(3, 16, 16), include=["stem"], exclude=["body.*"], force=True)
    rows = report.set_index("name")
    assert rows.loc["stem", "converted"] and rows.loc["stem", "G"] == 24  # 3 channels x min(M=8, 9) components
    assert rows.loc["body.0", "reason"] == rows.loc["body.2", "reason"] == "excluded"
    _, forced = convert(model, beta=BETA, input_size=(3, 16, 16), force=True)
    assert forced.set_index("name").loc["narrow", "converted"]


def test_implicit_equals_explicit_and_save_load_round_trip(model, tmp_path):
    model.eval()
    x = torch.rand(4, 3, 16, 16)
    explicit, _ = convert(model, beta=BETA, input_size=(3, 16, 16))
    implicit, _ = convert(model, beta=BETA, input_size=(3, 16, 16), implicit=True)
    assert isinstance(implicit.body[0], nn.Conv2d)
    with torch.no_grad():
        out = explicit(x)
        assert torch.allclose(out, implicit(x), atol=1e-5)
        assert not torch.allclose(out, model(x), atol=1e-3)  # BETA really changes the function
    path = tmp_path / "converted.pt"
    torch.save(explicit.state_dict(), path)
    fresh = SmallCNN().eval()
    load_converted(fresh, path)
    assert isinstance(fresh.body[2], GDWSConv2d)
    with torch.no_grad():
        assert torch.equal(fresh(x), out)
    assert fresh.body[0].error == pytest.approx(explicit.body[0].error)
    again = load_converted(SmallCNN().eval(), explicit.state_dict())
    with torch.no_grad():
        assert torch.equal(again(x), out)


def test_gradients_flow_through_converted_model(model):
    converted, _ = convert(model, beta=BETA, input_size=(3, 16, 16))
    converted(torch.rand(2, 3, 16, 16)).sum().backward()
    for name in ("body.0", "body.2"):
        layer = converted.get_submodule(name)
        assert layer.depthwise.weight.grad.abs().sum() > 0 and layer.pointwise.weight.grad.abs().sum() > 0


def test_g_zero_layer_in_network(model):
    converted, report = convert(model, max_channels=0, input_size=(3, 16, 16))
    layer = converted.body[0]
    assert int(layer.g.sum()) == 0 and report.set_index("name").loc["body.0", "macs_after"] == 0
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expected = model.body[0].bias.view(1, -1, 1, 1).expand(2, 32, 8, 8)
        assert torch.equal(layer(torch.relu(model.bn(model.stem(x)))), expected)
        assert converted(x).shape == (2, 10)
        reloaded = load_converted(SmallCNN(), converted.state_dict())  # G = 0 layers round-trip too
        assert int(reloaded.body[0].g.sum()) == 0 and torch.equal(reloaded.eval()(x), converted.eval()(x))


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="exactly one of beta"):
        convert(model, beta=0.1, macs_ratio=2.0)
    with pytest.raises(ValueError, match="exactly one of beta"):
        convert(model)
    with pytest.raises(ValueError, match="not Conv2d modules"):
        convert(model, beta=0.1, alphas={"module.stem": torch.ones(3)})
    with pytest.raises(ValueError, match="alpha must have shape"):
        convert(model, beta=0.1, input_size=(3, 16, 16), alphas={"body.0": torch.ones(3)})


class StandardizedConv(nn.Conv2d):
    """A conv that standardises its weight in forward: it does not compute conv(x, self.weight)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


def test_conv_subclasses_with_their_own_forward_are_left_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), StandardizedConv(16, 32, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(32, 32, 3, padding=1))
    x = torch.rand(2, 3, 8, 8)
    fast, report = convert(net, beta=0.0, force=True)  # beta 0: every converted layer is exact
    reasons = dict(zip(report["name"], report["reason"]))
    assert reasons["1"] == "custom Conv2d forward" and isinstance(fast[1], StandardizedConv)
    assert isinstance(fast[3], GDWSConv2d)
    torch.testing.assert_close(fast(x), net(x), rtol=1e-4, atol=1e-4)
