"""GDWSConv2d: exactness at beta = 0, equivalence with to_conv(), G = 0, training, bad input."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gdws.core import GDWSConv2d

CONFIGS = [
    dict(kernel_size=3, stride=1, padding=0),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=2, padding="same"),
    dict(kernel_size=3, padding="valid", dilation=2),
    dict(kernel_size=3, stride=2, padding=2, dilation=2, bias=False),
    dict(kernel_size=(2, 3), padding=(1, 0)),
    dict(kernel_size=3, padding=1, padding_mode="reflect"),
    dict(kernel_size=3, padding=(1, 2), padding_mode="circular", bias=False),
    dict(kernel_size=3, padding=1, padding_mode="replicate"),
]
SHAPES = [(5, 7), (6, 4)]  # (C, M); M = 4 < K*K


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("c, m", SHAPES)
def test_beta_zero_reproduces_conv(cfg, c, m):
    torch.manual_seed(0)
    conv = nn.Conv2d(c, m, **cfg).double()
    layer = GDWSConv2d.from_conv(conv, beta=0.0)
    x = torch.randn(2, c, 9, 10, dtype=torch.float64)
    assert _rel(layer(x), conv(x)) < 1e-5
    assert layer.error == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_module_equals_to_conv_for_random_beta(cfg):
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 5, **cfg)
    total = conv.weight.detach().double().square().sum().item()
    x = torch.randn(3, 6, 11, 9)
    for frac in (0.05, 0.3, 0.7):
        layer = GDWSConv2d.from_conv(conv, beta=frac * total)
        dense = layer.to_conv()
        assert 0 < layer.g.sum() < 6 * 5
        assert _rel(layer(x), dense(x)) < 1e-5
        # the reported error is the real squared Frobenius error of the equivalent weight
        real = (conv.weight - dense.weight).double().square().sum().item()
        assert layer.error == pytest.approx(real, rel=1e-4)
        assert layer.error <= frac * total


@pytest.mark.parametrize("cfg", CONFIGS)
def test_g_zero_outputs_bias_with_right_shape(cfg):
    conv = nn.Conv2d(4, 3, **cfg)
    layer = GDWSConv2d.from_conv(conv, beta=1e12)
    assert int(layer.g.sum()) == 0 and layer.depthwise is None
    x = torch.randn(2, 4, 9, 8)
    expected = conv(x).shape
    out = layer(x)
    assert out.shape == expected
    bias = conv.bias if conv.bias is not None else torch.zeros(3)
    assert torch.equal(out, bias.detach().view(1, 3, 1, 1).expand(expected))
    assert torch.equal(layer.to_conv()(x), out)
    assert layer.macs((5, 5)) == 0


def test_mego_layer_macs_repr_and_index():
    torch.manual_seed(2)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    layer = GDWSConv2d.from_conv(conv, max_channels=20)
    g = int(layer.g.sum())
    assert g == 20 and layer.index.tolist() == sum(([c] * n for c, n in enumerate(layer.g.tolist())), [])
    assert layer.macs((4, 5)) == (9 + 16) * 20 * 4 * 5
    assert all(s in repr(layer) for s in ("C=8", "K=3x3", "M=16", "G=20"))


def test_trainable_gradients_reach_both_stages():
    torch.manual_seed(3)
    layer = GDWSConv2d.from_conv(nn.Conv2d(4, 6, 3, padding=1), beta=0.01)
    layer(torch.randn(2, 4, 6, 6)).square().sum().backward()
    for p in (layer.depthwise.weight, layer.pointwise.weight, layer.pointwise.bias):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_empty_constructor_loads_state_of_converted_layer():
    torch.manual_seed(4)
    src = GDWSConv2d.from_conv(nn.Conv2d(5, 4, 3, stride=2, padding="valid"), beta=0.05)
    empty = GDWSConv2d(5, 4, 3, src.g, stride=2, padding="valid")
    empty.load_state_dict(src.state_dict())
    x = torch.randn(1, 5, 9, 9)
    assert torch.equal(empty(x), src(x)) and empty.error == pytest.approx(src.error)


def test_bad_input():
    conv = nn.Conv2d(4, 4, 3)
    with pytest.raises(ValueError, match="groups=1"):
        GDWSConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=2), beta=0.1)
    with pytest.raises(ValueError, match="exactly one of beta"):
        GDWSConv2d.from_conv(conv, beta=0.1, max_channels=3)
    with pytest.raises(ValueError, match="exactly one of beta"):
        GDWSConv2d.from_conv(conv)
    with pytest.raises(ValueError, match="beta must be"):
        GDWSConv2d.from_conv(conv, beta=float("nan"))
    with pytest.raises(ValueError, match="expected an nn.Conv2d"):
        GDWSConv2d.from_conv(nn.Linear(3, 3), beta=0.1)
