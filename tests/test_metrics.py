"""gdws.metrics: parameter sizes, MACs against closed forms (dense and GDWS layers), FPS bookkeeping."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from gdws.core import GDWSConv2d
from gdws.metrics import count_macs, count_params, device_name, measure_fps, size_mb


@pytest.mark.parametrize("stride,padding,size", [(1, 1, 16), (2, 1, 15), (1, 0, 9)])
def test_dense_conv_macs_is_m_c_k_k_h_w(stride, padding, size):
    conv = nn.Conv2d(6, 10, 3, stride=stride, padding=padding, bias=True)
    out = conv(torch.zeros(1, 6, size, size)).shape[-1]
    assert count_macs(conv, (6, size, size)) == 10 * 6 * 3 * 3 * out * out


@pytest.mark.parametrize("beta,stride", [(0.0, 1), (0.3, 1), (0.8, 2)])
def test_gdws_layer_macs_is_k_k_plus_m_times_g_h_w(beta, stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, stride=stride, padding=1, bias=False)
    layer = GDWSConv2d.from_conv(conv, beta=beta * conv.weight.pow(2).sum().item())
    g_total = int(layer.g.sum())
    assert 0 < g_total <= 8 * 9
    h = layer(torch.zeros(1, 8, 16, 16)).shape[-1]
    expected = (3 * 3 + 12) * g_total * h * h
    assert count_macs(layer, (8, 16, 16)) == expected == layer.macs((h, h))


def test_macs_of_a_network_count_conv_and_linear_only():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )
    expected = 8 * 3 * 9 * 32 * 32 + 8 * 1 * 9 * 16 * 16 + 8 * 10
    net.train()
    assert count_macs(net, (3, 32, 32)) == expected
    assert net.training  # mode restored
    with pytest.raises(ValueError, match="C, H, W"):
        count_macs(net, (1, 3, 32, 32))


def test_size_counts_parameters_not_buffers_and_nonzero_on_request():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(4, 2, bias=False))
    n = 8 * 3 * 9 + 8 + 2 * 8 + 2 * 4  # conv w+b, BN gamma+beta, linear; running stats are buffers
    nn.init.ones_(net[1].bias)  # BN beta starts at 0: make every parameter non-zero first
    assert count_params(net) == n
    assert size_mb(net) == pytest.approx(n * 4 / 2**20)
    net.requires_grad_(False)  # freezing for evaluation must not change the size
    assert size_mb(net) == pytest.approx(n * 4 / 2**20)
    with torch.no_grad():
        net[0].weight[:4] = 0  # 4 of 8 filters pruned: 4 * 27 zeros
    assert count_params(net, nonzero=True) == n - 4 * 27
    assert size_mb(net, nonzero=True) == pytest.approx((n - 4 * 27) * 4 / 2**20)


def test_paper_vgg16_size_is_56_mb():
    from gdws.models import create_model

    assert size_mb(create_model("vgg16")) == pytest.approx(56.18, abs=0.01)  # reproduction spec §1


def test_measure_fps_reports_consistent_numbers():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10)).train()
    out = measure_fps(net, (3, 32, 32), batch_size=4, device="cpu", warmup=1, min_run_time=0.05)
    assert out["fps"] == pytest.approx(4 / out["median_s"])
    assert 0 < out["median_s"] < 1
    assert out["batch_size"] == 4 and out["threads"] == torch.get_num_threads()
    assert out["device"] == "cpu" and out["device_name"] == device_name("cpu") != ""
    assert net.training
    with pytest.raises(ValueError, match="batch_size"):
        measure_fps(net, batch_size=0)


def test_cpu_name_comes_from_cpuinfo():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this OS (the platform fallback is used)")
    names = [l.split(":", 1)[1].strip() for l in cpuinfo.read_text().splitlines() if l.startswith("model name")]
    assert device_name(torch.device("cpu")) == names[0]
