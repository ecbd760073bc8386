"""Export a (GDWS, optimised) model to ONNX, check onnxruntime against PyTorch, and time onnxruntime."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils import benchmark


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike, opset: int = 17) -> Path:
    """Export ``model`` (eval mode, on the CPU) to ``path`` with a dynamic batch dimension; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    with warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated in favour of dynamo but exports these plain
        # conv/matmul graphs in well under a second, where the dynamo exporter takes many seconds
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example_input.cpu(),), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU InferenceSession for ``path`` using ``threads`` intra-op threads (default: torch's)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}; create one with `gdws export OUT --onnx FILE`")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def max_abs_diff(run: Callable[[np.ndarray], np.ndarray], model: nn.Module, x: torch.Tensor) -> float:
    """Max |run(x) - model(x)| for a runtime callable ``run`` (numpy in, numpy out) and the PyTorch model: how an
    exported graph (onnxruntime, OpenVINO) is checked against PyTorch."""
    x = x.detach().cpu().float()
    with torch.inference_mode():
        ref = model.eval().cpu()(x).numpy()
    return float(np.abs(np.asarray(run(x.numpy())) - ref).max())


def ort_runner(sess) -> Callable[[np.ndarray], np.ndarray]:
    """A callable numpy [N, ...] -> numpy output running the onnxruntime session ``sess`` (its first output)."""
    name = sess.get_inputs()[0].name
    return lambda a: sess.run(None, {name: a})[0]


def check_onnx(path: str | os.PathLike, model: nn.Module, example_input: torch.Tensor) -> float:
    """Max absolute difference between onnxruntime's and PyTorch's outputs on ``example_input``."""
    return max_abs_diff(ort_runner(ort_session(path)), model, example_input)


def ort_fps(path: str | os.PathLike, input_size: tuple[int, ...] = (3, 32, 32), batch_size: int = 1,
            min_run_time: float = 1.0) -> dict:
    """onnxruntime images per second: dict(fps, median_s, batch_size, threads) (blocked_autorange median)."""
    sess = ort_session(path)
    feed = {sess.get_inputs()[0].name: np.random.rand(batch_size, *input_size).astype(np.float32)}
    sess.run(None, feed)
    timer = benchmark.Timer("sess.run(None, feed)", globals={"sess": sess, "feed": feed})
    median = timer.blocked_autorange(min_run_time=min_run_time).median
    return {"fps": batch_size / median, "median_s": median, "batch_size": batch_size,
            "threads": torch.get_num_threads()}
