"""Helpers shared by the benchmark scripts (not library code): a spectrum-independent conversion, machine peaks,
paired end-to-end timing and the header every result file starts with."""
from __future__ import annotations

import copy
import datetime
import os
import shlex
import statistics
import sys

import torch
from torch import nn

from gdws.core import GDWSConv2d, convert
from gdws.data import CIFAR10DataModule
from gdws.fast.timing import time_call, time_rounds
from gdws.models import create_model, load_checkpoint


def real_resnet20(checkpoint: str, data: str) -> tuple[nn.Module, CIFAR10DataModule, list]:
    """The third-party ResNet-20 (ImageNet input statistics) in eval mode, its CIFAR-10 DataModule and the
    1,017 exact test images as one batch (the studies' test set)."""
    dense = load_checkpoint(create_model("resnet20", normalize="imagenet"), checkpoint).eval()
    dm = CIFAR10DataModule(root=data, exact_only=True, eval_batch_size=1017)
    dm.prepare_data()
    dm.setup("test")
    return dense, dm, list(dm.test_dataloader())


def convert_every_layer(model: nn.Module, ratio: float) -> tuple[nn.Module, float]:
    """Convert each layer convert() would consider with MEGO at G_l = floor(dense MACs / (ratio * (K*K + M)))).

    Every converted layer then costs about 1/ratio of its dense MACs whatever the weights' spectra are
    (random init included). Returns (converted eval-mode copy, network MAC ratio dense / converted).
    """
    _, report = convert(model, max_channels=1, force=True)  # any budget: only the eligible layers and MACs
    converted = copy.deepcopy(model).eval()
    before = after = report.attrs["macs_total_before"]
    for _, row in report[report["converted"]].iterrows():
        conv = converted.get_submodule(row["name"])
        k = conv.kernel_size[0] * conv.kernel_size[1]
        g_max = max(1, int(conv.in_channels * conv.out_channels * k // ((k + conv.out_channels) * ratio)))
        layer = GDWSConv2d.from_conv(conv, max_channels=g_max)
        converted.set_submodule(row["name"], layer)
        per_pixel = conv.in_channels * conv.out_channels * k
        after += row["macs_before"] // per_pixel * layer.num_intermediate * (k + conv.out_channels) - row["macs_before"]
    return converted, before / after


def machine_peaks(device: str = "cpu", min_run_time: float = 0.5) -> dict:
    """Measured reference peaks: fp32 GEMM GFLOP/s (2048^3) and copy bandwidth GB/s (256 MiB read + 256 MiB written)."""
    a = torch.randn(2048, 2048, device=device)
    gemm = time_call(lambda t: t @ t, a, min_run_time).median
    big, dst = torch.randn(64 * 2**20, device=device), torch.empty(64 * 2**20, device=device)
    copy_s = time_call(dst.copy_, big, min_run_time).median  # preallocated: no page faults in the timing
    return {"gemm_gflops": 2 * 2048**3 / gemm / 1e9, "copy_gbs": 2 * big.numel() * 4 / copy_s / 1e9}


def paired_speedups(models: dict[str, nn.Module], x: torch.Tensor, seconds: float, rounds: int = 5) -> dict:
    """Median seconds of each model and, per model, the median and range of its per-round speed-up over 'dense'.

    Models are timed alternately in one process (`time_rounds`), so each round's ratio compares like with like.
    """
    runs = time_rounds(models, x, seconds * len(models), rounds)
    out = {}
    for k, v in runs.items():
        ratios = [d / t for d, t in zip(runs["dense"], v)]
        out[k] = {"s": statistics.median(v), "speedup": statistics.median(ratios), "lo": min(ratios), "hi": max(ratios)}
    return out


def header(title: str) -> list[str]:
    """Markdown title, the exact command, date, torch, threads and load average (noisy-machine context)."""
    return [f"# {title}", "", f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`", "",
            f"Date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}; torch {torch.__version__}; "
            f"threads {torch.get_num_threads()}; load average at start {os.getloadavg()[0]:.2f} (1 min) on "
            f"{os.cpu_count()} CPUs", ""]
