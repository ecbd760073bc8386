"""The speed columns of a result row: FPS at batch 1 and throughput at a large batch, on one device, optionally
beside a reference network (the dense original) timed in the same process."""
from __future__ import annotations

import statistics
from collections import Counter
from typing import Mapping, Sequence

import torch
from torch import nn

from gdws.metrics.fps import measure_fps
from gdws.utils import device_name


def interleaved_fps(models: Mapping[object, nn.Module], input_size: Sequence[int], batch_size: int,
                    device: torch.device | str, rounds: int = 3, warmup: int = 1,
                    min_run_time: float = 1.0) -> dict:
    """Median FPS of each of ``models`` over ``rounds`` rounds that time every model in turn.

    Interleaving makes the ratio of two models' FPS robust to slow drifts and bursts of contention on a shared
    machine: both see the same conditions in each round. ``min_run_time`` is the seconds per model and round.
    Returns ``{key: median fps}`` with the keys of ``models``.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    runs: dict = {key: [] for key in models}
    for _ in range(rounds):
        for key, model in models.items():
            runs[key].append(measure_fps(model, input_size, batch_size, device, warmup=warmup,
                                         min_run_time=min_run_time)["fps"])
    return {key: statistics.median(values) for key, values in runs.items()}


def chosen_forms(model: nn.Module) -> str:
    """``form:count`` of the layer forms in a network made by optimize_for_inference, most used first (e.g.
    ``grouped:5 dense_cl:3``; convs left as they were are not counted); ``none`` when it has no such layer."""
    counts = Counter(m.form_name for m in model.modules() if isinstance(getattr(m, "form_name", None), str))
    return " ".join(f"{form}:{n}" for form, n in counts.most_common()) or "none"


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
    reference: nn.Module | None = None,
    rounds: int = 3,
    runtime: str = "torch",
) -> dict:
    """FPS (images/s at ``fps_batch_size``) and throughput (at ``throughput_batch_size``) of ``model``.

    With ``fast_inference`` the timed network is ``gdws.fast.optimize_for_inference(model)`` (same function;
    BN folded and each GDWS layer in its fastest exact form on ``runtime``), chosen anew for each batch size because the
    fastest form depends on it, and applied to dense and GDWS models alike so that their speeds compare;
    ``select_time`` is the seconds of timing per candidate form during that choice.
    With a ``reference`` (the dense network a GDWS or pruned one came from) both are timed in ``rounds``
    interleaved rounds of ``min_run_time / rounds`` seconds each (medians), and the result also has
    ``fps_dense`` and ``throughput_dense``: a speed ratio from one process under one load, where rates from
    two separate runs on a shared machine can differ by more than the effect measured.
    ``runtime`` (gdws.fast.runtimes.RUNTIMES: torch, onnxruntime, openvino; the last two on the CPU) is what runs
    the networks: each is exported (ONNX) and compiled for it at each batch size, and timed through it the same way.
    ``model`` itself is left as it was (optimize_for_inference times a copy). Returns
    ``dict(fps, throughput, threads, device, fast_inference, runtime, runtime_version)`` (plus the reference's rates,
    and with ``fast_inference`` the forms chosen for ``model`` at each batch size: ``fast_forms``), rates rounded
    to 0.01 and ``device`` naming the hardware, e.g. ``cpu (Intel(R) Xeon(R) ...)``.
    """
    from gdws.fast.runtimes import check_runtime, runtime_module, runtime_version

    device = torch.device(device)
    check_runtime(runtime, device)
    size = tuple(input_size)
    nets = {"model": model} if reference is None else {"model": model, "reference": reference}

    def timed(batch_size: int) -> tuple[dict, str]:
        prepared, forms = dict(nets), ""
        if fast_inference:
            from gdws.fast import optimize_for_inference  # imported here: gdws.fast loads pandas

            x = torch.rand(batch_size, *size, device=device)
            prepared = {k: optimize_for_inference(net, x, device=device, min_run_time=float(select_time),
                                                  runtime=runtime) for k, net in nets.items()}
            forms = f"b{batch_size} {chosen_forms(prepared['model'])}"
        if runtime != "torch":
            x = torch.rand(batch_size, *size)
            prepared = {k: runtime_module(net, x, runtime) for k, net in prepared.items()}
        n = 1 if reference is None else int(rounds)  # a model alone: one measurement of min_run_time
        return interleaved_fps(prepared, size, batch_size, device, rounds=n, warmup=int(warmup),
                               min_run_time=float(min_run_time) / n), forms

    (single, forms_single), (batch, forms_batch) = timed(int(fps_batch_size)), timed(int(throughput_batch_size))
    out = {
        "fps": round(single["model"], 2),
        "throughput": round(batch["model"], 2),
        "threads": torch.get_num_threads(),
        "device": f"{device} ({device_name(device)})",
        "fast_inference": bool(fast_inference),
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
    }
    if fast_inference:
        out["fast_forms"] = f"{forms_single}; {forms_batch}"
    if reference is not None:
        out.update(fps_dense=round(single["reference"], 2), throughput_dense=round(batch["reference"], 2))
    return out
