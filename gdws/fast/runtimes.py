"""The inference runtimes a network can be timed on: PyTorch eager, onnxruntime and OpenVINO (CPU).

``runtime_module(model, x, runtime)`` gives a module whose call runs ``model`` compiled for that runtime at x's
shape, so that every timing helper of the project (gdws.metrics.fps, gdws.fast.timing) times any runtime alike.
The exported graph is the project's ONNX export of ``model`` (its forms as they are): choosing the forms is
gdws.fast.select's job (``optimize_for_inference(..., runtime=...)``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

RUNTIMES = ("torch", "onnxruntime", "openvino")


def check_runtime(runtime: str, device: torch.device | str = "cpu") -> str:
    """``runtime`` if it is one of RUNTIMES, installed and able to run on ``device`` (all but torch: the CPU only);
    ValueError / RuntimeError (naming the extra to install) otherwise."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}; got {runtime!r}")
    if runtime != "torch" and torch.device(device).type != "cpu":
        raise ValueError(f"runtime {runtime!r} is timed on the CPU only (got device {device}); use the torch runtime "
                         "on a GPU, or the CPU")
    runtime_version(runtime)  # imports it: a missing optional extra fails here, before anything is timed
    return runtime


def runtime_version(runtime: str) -> str:
    """The version of the package behind ``runtime`` (torch, onnxruntime or openvino)."""
    if runtime == "openvino":
        from gdws.fast.openvino_runtime import openvino_version

        return openvino_version()
    if runtime == "onnxruntime":
        import onnxruntime

        return onnxruntime.__version__
    if runtime == "torch":
        return torch.__version__
    raise ValueError(f"runtime must be one of {RUNTIMES}; got {runtime!r}")


class RuntimeModule(nn.Module):
    """A network compiled for a runtime behind nn.Module's call (CPU float32 tensors in and out).

    The output may share memory with the runtime's buffers (OpenVINO): clone it to keep it past the next call.
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], runtime: str) -> None:
        super().__init__()
        self.run, self.runtime = run, runtime

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(np.ascontiguousarray(x.detach().cpu().float().numpy())))


def runtime_module(model: nn.Module, example_input: torch.Tensor, runtime: str,
                   threads: int | None = None) -> nn.Module:
    """``model`` compiled for ``runtime`` (torch: the eval-mode model itself) at ``example_input``'s shape on the
    CPU, with ``threads`` intra-op threads (default: torch's)."""
    check_runtime(runtime)
    if runtime == "torch":
        return model.eval()
    model = model.eval().cpu()
    x = example_input.detach().cpu().clone()  # a normal tensor: the exporter traces with autograd on
    if runtime == "openvino":
        from gdws.fast.openvino_runtime import compile_openvino, openvino_runner, to_openvino

        compiled = compile_openvino(to_openvino(model, x), batch_size=x.shape[0], threads=threads)
        return RuntimeModule(openvino_runner(compiled), runtime)
    from gdws.fast.onnx_export import export_onnx, ort_runner, ort_session

    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(export_onnx(model, x, Path(tmp) / "model.onnx"), threads=threads)
    return RuntimeModule(ort_runner(sess), runtime)
