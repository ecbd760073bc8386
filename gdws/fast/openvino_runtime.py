"""OpenVINO as a deployment target: IR files from a (converted) PyTorch model, a compiled CPU model, a check.

The model goes through the project's ONNX export (gdws.fast.onnx_export.export_onnx, the graph onnxruntime also
runs), which OpenVINO's ONNX frontend reads; the IR (model.xml + model.bin) is what a user ships. OpenVINO is an
optional extra: every entry point raises one RuntimeError naming it when the package is missing.
"""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gdws.fast.onnx_export import export_onnx, max_abs_diff

EXTRA = 'pip install -e ".[openvino]"'


def import_openvino() -> Any:
    """The ``openvino`` module, or a RuntimeError naming the optional extra that installs it."""
    try:
        import openvino
    except ImportError as err:
        raise RuntimeError(f"OpenVINO is not installed; install the optional extra with `{EXTRA}` "
                           f"(or `pip install openvino`): {err}") from None
    return openvino


def openvino_version() -> str:
    """The installed OpenVINO version (e.g. ``2026.4.1``), without the build suffix."""
    return import_openvino().__version__.split("-")[0]


@functools.lru_cache(maxsize=1)
def core() -> Any:
    """One ``openvino.Core`` per process: creating one loads the CPU plugin (a large part of a small compile)."""
    return import_openvino().Core()


def to_openvino(model: nn.Module, example_input: torch.Tensor) -> Any:
    """``model`` (eval mode, CPU) as an ``openvino.Model`` with a dynamic batch dimension, via its ONNX export."""
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, example_input, Path(tmp) / "model.onnx")
        return core().read_model(str(path))  # the ONNX frontend parses the file into memory


def compile_openvino(ov_model: Any, batch_size: int | None = None, threads: int | None = None) -> Any:
    """A CPU ``CompiledModel`` of ``ov_model``: float32 (no bf16/f16 down-conversion), LATENCY hint, ``threads``
    inference threads (default: torch's). ``batch_size`` fixes the batch dimension (static shapes run faster);
    the IR on disk keeps it dynamic."""
    if batch_size is not None:
        ov_model = ov_model.clone()
        shape = ov_model.input(0).get_partial_shape()
        shape[0] = int(batch_size)
        ov_model.reshape({0: shape})
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
              "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
    return core().compile_model(ov_model, "CPU", config)


def openvino_runner(compiled: Any):
    """A callable numpy [N, ...] -> numpy output running ``compiled`` without copies (one reused request).

    The returned array is the request's output buffer: it is overwritten by the next call (copy it to keep it).
    """
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x}, share_inputs=True, share_outputs=True)
        return request.get_output_tensor(0).data

    return run


def export_openvino(model: nn.Module, example_input: torch.Tensor, out_dir: str | os.PathLike,
                    reference: nn.Module | None = None, atol: float = 1e-4) -> dict:
    """Write ``model``'s OpenVINO IR to ``out_dir`` (model.xml, model.bin) and check it against PyTorch.

    The compiled IR (read back from disk) is run on ``example_input`` and compared with ``reference`` (default:
    ``model``; pass the converted model as loaded when ``model`` is its optimised form). Raises RuntimeError
    when the max absolute difference exceeds ``atol`` (the files stay, for inspection). Returns
    dict(xml, bin, max_abs_diff, openvino).
    """
    ov = import_openvino()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    xml = out / "model.xml"
    ov.save_model(to_openvino(model, example_input), str(xml), compress_to_fp16=False)
    compiled = compile_openvino(core().read_model(str(xml)), batch_size=example_input.shape[0])
    err = max_abs_diff(openvino_runner(compiled), reference if reference is not None else model, example_input)
    if not err <= atol:
        raise RuntimeError(f"OpenVINO output differs from PyTorch by {err:.3e} > atol {atol} (IR left in {out})")
    return {"xml": str(xml), "bin": str(xml.with_suffix(".bin")), "max_abs_diff": err,
            "openvino": openvino_version()}
