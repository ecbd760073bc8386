"""gdws.metrics: parameter sizes, MACs against closed forms (dense and GDWS layers), FPS against known times."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import torch
from torch import nn

from gdws.core import GDWSConv2d
from gdws.metrics import count_macs, count_params, device_name, interleaved_fps, measure_fps, measure_speed, size_mb

CALL_S = 0.02  # seconds per forward of SlowNet, whatever the batch size
# Timing budget per measurement below one SlowNet call: blocked_autorange then times single calls (one to size the
# block, one measured) instead of blocks of ten; the sleeps make each call's time known, so one call is enough.
ONE_CALL = CALL_S / 2


class SlowNet(nn.Module):
    """A classifier whose forward takes CALL_S seconds (sleeping) for any batch: its true FPS is known."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(CALL_S)
        return self.fc(x.flatten(1))


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


def test_measure_fps_is_images_per_second_of_the_forward():
    net = SlowNet().train()
    out = measure_fps(net, (3, 8, 8), batch_size=4, device="cpu", warmup=1, min_run_time=ONE_CALL)
    # sleep() only ever overshoots, so the measured rate is at most the true 4 / CALL_S (= 200 images/s).
    assert 0.5 * 4 / CALL_S < out["fps"] <= 1.02 * 4 / CALL_S
    assert out["batch_size"] == 4 and out["device"] == "cpu"
    assert net.training  # mode restored
    with pytest.raises(ValueError, match="batch_size"):
        measure_fps(net, batch_size=0)


def test_measure_speed_times_each_batch_size():
    # One SlowNet call takes CALL_S at any batch size, so throughput / fps = the ratio of the batch sizes.
    out = measure_speed(SlowNet(), (3, 8, 8), "cpu", fps_batch_size=1, throughput_batch_size=8, warmup=1,
                        min_run_time=ONE_CALL)
    assert set(out) == {"fps", "throughput", "threads", "device", "fast_inference", "runtime", "runtime_version"}
    assert out["runtime"] == "torch" and out["runtime_version"] == torch.__version__
    assert 0.5 / CALL_S < out["fps"] <= 1.02 / CALL_S
    assert 4 < out["throughput"] / out["fps"] < 16
    assert out["device"] == f"cpu ({device_name('cpu')})" and out["fast_inference"] is False


def test_measure_speed_fast_inference_times_the_network_optimised_for_each_batch_size(monkeypatch):
    import gdws.fast

    shapes = []

    def optimize(model, example_input, device=None, min_run_time=None, runtime=None):  # the slow form selection
        shapes.append((tuple(example_input.shape), min_run_time))
        return SlowNet()

    monkeypatch.setattr(gdws.fast, "optimize_for_inference", optimize)
    quick = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))  # far faster than SlowNet by itself
    out = measure_speed(quick, (3, 8, 8), "cpu", throughput_batch_size=4, fast_inference=True, warmup=1,
                        min_run_time=ONE_CALL, select_time=0.03)
    assert shapes == [((1, 3, 8, 8), 0.03), ((4, 3, 8, 8), 0.03)]  # chosen per batch size, at the asked timing
    assert out["fast_inference"] is True and out["fps"] <= 1.02 / CALL_S  # the optimised network was timed


class SlowerNet(SlowNet):
    """SlowNet at twice the time per call: half its FPS."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(CALL_S)
        return super().forward(x)


def test_measure_speed_times_the_reference_beside_the_model():
    # The converted model (SlowNet) beside its dense original (SlowerNet, 2x the time): the ratio is 2.
    out = measure_speed(SlowNet(), (3, 8, 8), "cpu", throughput_batch_size=4, warmup=1, min_run_time=3 * ONE_CALL,
                        reference=SlowerNet(), rounds=3)  # min_run_time is split over the rounds
    assert set(out) == {"fps", "throughput", "threads", "device", "fast_inference", "fps_dense", "throughput_dense",
                        "runtime", "runtime_version"}
    assert 1.6 < out["fps"] / out["fps_dense"] < 2.2
    assert 1.6 < out["throughput"] / out["throughput_dense"] < 2.2
    assert 0.5 / (2 * CALL_S) < out["fps_dense"] <= 1.02 / (2 * CALL_S)


def test_measure_speed_on_a_runtime_times_each_network_compiled_for_it(monkeypatch):
    import onnxruntime

    import gdws.fast.runtimes

    compiled = []

    def compile_for(model, example_input, runtime, threads=None):  # the compiled graph stands in as SlowNet
        compiled.append((type(model).__name__, tuple(example_input.shape), runtime))
        return SlowNet() if isinstance(model, SlowerNet) else SlowerNet()

    monkeypatch.setattr(gdws.fast.runtimes, "runtime_module", compile_for)
    out = measure_speed(SlowNet(), (3, 8, 8), "cpu", throughput_batch_size=4, warmup=1, min_run_time=3 * ONE_CALL,
                        reference=SlowerNet(), rounds=3, runtime="onnxruntime")
    assert compiled == [("SlowNet", (1, 3, 8, 8), "onnxruntime"), ("SlowerNet", (1, 3, 8, 8), "onnxruntime"),
                        ("SlowNet", (4, 3, 8, 8), "onnxruntime"), ("SlowerNet", (4, 3, 8, 8), "onnxruntime")]
    assert 1.6 < out["fps_dense"] / out["fps"] < 2.2  # what ran is what the runtime compiled, not the modules
    assert out["runtime"] == "onnxruntime" and out["runtime_version"] == onnxruntime.__version__
    with pytest.raises(ValueError, match="CPU only"):
        measure_speed(SlowNet(), (3, 8, 8), "cuda", runtime="onnxruntime")


def test_interleaved_fps_alternates_the_models_each_round():
    order = []

    class Tagged(SlowNet):
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not order or order[-1] != self.tag:
                order.append(self.tag)
            return super().forward(x)

    fps = interleaved_fps({"a": Tagged("a"), "b": Tagged("b")}, (3, 8, 8), 1, "cpu", rounds=3, warmup=1,
                          min_run_time=ONE_CALL)
    assert order == ["a", "b"] * 3 and set(fps) == {"a", "b"}
    with pytest.raises(ValueError, match="rounds"):
        interleaved_fps({"a": SlowNet()}, (3, 8, 8), 1, "cpu", rounds=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measure_speed_on_cuda_names_the_gpu():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    out = measure_speed(net, (3, 16, 16), "cuda", throughput_batch_size=8, fast_inference=True, warmup=1,
                        min_run_time=0.05)
    assert out["device"].startswith("cuda") and torch.cuda.get_device_name() in out["device"]
    assert out["throughput"] > out["fps"] > 0


@pytest.mark.skipif(shutil.which("lscpu") is None, reason="no lscpu to cross-check the CPU name")
def test_cpu_name_is_the_one_the_os_reports():
    lines = subprocess.run(["lscpu"], capture_output=True, text=True, env={"LC_ALL": "C"}).stdout.splitlines()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")]
    if not names:
        pytest.skip("lscpu reports no model name on this machine")
    assert device_name("cpu") == names[0]
