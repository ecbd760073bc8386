"""Small torch-only helpers at the bottom of the package, used by several layers: what names a device and a
network's weights in cache keys and result rows. Imports nothing of gdws."""
from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import torch
from torch import nn


def device_name(device: torch.device | str) -> str:
    """Human-readable name of ``device``: the CUDA device name, or the CPU model from /proc/cpuinfo."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or device.type


def weights_fingerprint(model: nn.Module, length: int = 16) -> str:
    """A hash of every tensor in ``model.state_dict()`` (names, shapes, dtypes, values).

    Caches derived from weights (alphas, pruned networks) are keyed by it, so retrained or overwritten
    weights never reuse stale results, whatever file they came from.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:length]
