"""Inference speed: images per second of a model on a named device (torch.utils.benchmark)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils import benchmark

from gdws.core.discovery import model_device_dtype
from gdws.utils import device_name


@torch.inference_mode()
def measure_fps(
    model: nn.Module,
    input_size: Sequence[int] = (3, 32, 32),
    batch_size: int = 1,
    device: torch.device | str | None = None,
    warmup: int = 5,
    min_run_time: float = 1.0,
) -> dict:
    """Images per second of ``model`` on batches of ``batch_size`` random images.

    The model is moved to ``device`` (default: where its parameters are) and runs in eval mode under
    inference_mode after ``warmup`` untimed calls; the time per batch is
    the median of ``Timer.blocked_autorange(min_run_time)`` (the Timer synchronises CUDA itself). Returns
    ``dict(fps, median_s, batch_size, threads, device, device_name)`` where fps = batch_size / median_s;
    the paper's "FPS" is batch_size=1, "throughput" a large batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else model_device_dtype(model)[0]
    was_training = model.training
    model.eval()
    try:
        model.to(device)
        x = torch.rand(batch_size, *input_size, device=device)
        for _ in range(warmup):
            model(x)
        threads = torch.get_num_threads()
        timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
        median = timer.blocked_autorange(min_run_time=min_run_time).median
    finally:
        model.train(was_training)
    return {
        "fps": batch_size / median,
        "median_s": median,
        "batch_size": batch_size,
        "threads": threads,
        "device": str(device),
        "device_name": device_name(device),
    }
