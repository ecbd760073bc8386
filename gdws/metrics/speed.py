"""The speed columns of a result row: FPS at batch 1 and throughput at a large batch, on one device."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from gdws.metrics.fps import measure_fps


def measure_speed(
    model: nn.Module,
    input_size: Sequence[int],
    device: torch.device | str,
    fps_batch_size: int = 1,
    throughput_batch_size: int = 256,
    fast_inference: bool = False,
    warmup: int = 10,
    min_run_time: float = 2.0,
    select_time: float = 0.1,
) -> dict:
    """FPS (images/s at ``fps_batch_size``) and throughput (at ``throughput_batch_size``) of ``model``.

    With ``fast_inference`` the timed network is ``gdws.fast.optimize_for_inference(model)`` (same function;
    BN folded and each GDWS layer in its fastest exact form), chosen anew for each batch size because the
    fastest form depends on it, and applied to dense and GDWS models alike so that their speeds compare;
    ``select_time`` is the seconds of timing per candidate form during that choice.
    ``model`` itself is left as it was (optimize_for_inference times a copy). Returns
    ``dict(fps, throughput, threads, device, fast_inference)``, rates rounded to 0.01 and ``device`` naming
    the hardware, e.g. ``cpu (Intel(R) Xeon(R) ...)``.
    """
    device = torch.device(device)
    size = tuple(input_size)

    def timed(batch_size: int) -> dict:
        net = model
        if fast_inference:
            from gdws.fast import optimize_for_inference  # imported here: gdws.fast loads pandas

            net = optimize_for_inference(model, torch.rand(batch_size, *size, device=device), device=device,
                                         min_run_time=float(select_time))
        return measure_fps(net, size, batch_size, device, warmup=int(warmup), min_run_time=float(min_run_time))

    single, batch = timed(int(fps_batch_size)), timed(int(throughput_batch_size))
    return {
        "fps": round(single["fps"], 2),
        "throughput": round(batch["fps"], 2),
        "threads": single["threads"],
        "device": f"{single['device']} ({single['device_name']})",
        "fast_inference": bool(fast_inference),
    }
