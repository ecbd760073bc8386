"""Saving and loading: alpha files and converted models."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from .discovery import model_device_dtype
from .layer import GDWSConv2d

#: What torch.load raises for a file that is not a readable checkpoint (truncated zip, random bytes or text,
#: which its unpicklers may trip over in many ways; a pickle naming a class that does not exist here).
LOAD_ERRORS = (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
               AttributeError, ImportError, IndexError, KeyError, TypeError)


def save_alphas(alphas: dict[str, Tensor], path: str | os.PathLike) -> None:
    """Save {layer name: Tensor [C]} as a plain dict of CPU tensors (torch.save)."""
    if not isinstance(alphas, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in alphas.items()):
        raise ValueError("alphas must be a dict {layer name: Tensor [C]} as returned by compute_alphas")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in alphas.items()}, path)


def load_alphas(path: str | os.PathLike) -> dict[str, Tensor]:
    """Load alphas saved by `save_alphas` (weights_only=True: plain tensors only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no alpha file at {path}; create one with compute_alphas(...) and save_alphas(...)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as exc:
        raise ValueError(f"{path} is not a valid alpha file ({exc}); recreate it with save_alphas") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) and v.dim() == 1
                                             for k, v in data.items()):
        raise ValueError(f"{path} does not hold a dict {{layer name: 1-D tensor}}; recreate it with save_alphas")
    return data


def load_converted(model: nn.Module, path_or_state_dict: str | os.PathLike | dict) -> nn.Module:
    """Load a converted model saved with `torch.save(converted.state_dict(), path)` into `model`.

    `model` is the ORIGINAL architecture (e.g. a fresh `create_model(...)`) or an already converted one. Every
    module whose name has a saved `<name>.g` buffer is replaced (in place) by an empty GDWSConv2d of the saved
    shapes, then all weights are loaded with strict key checking. Returns `model`.
    """
    if isinstance(path_or_state_dict, dict):
        state = path_or_state_dict
    else:
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise FileNotFoundError(f"no saved model at {path}; save one with torch.save(model.state_dict(), path)")
        state = torch.load(path, map_location="cpu", weights_only=True)
    modules = dict(model.named_modules())
    for key, g in state.items():
        if not key.endswith(".g") or key.count(".") < 1:
            continue
        name = key[:-2]
        old = modules.get(name)
        if old is None:
            raise ValueError(f"saved GDWS layer '{name}' is not a module of the given model; pass the same "
                             "architecture the converted model was made from")
        if not isinstance(old, (nn.Conv2d, GDWSConv2d)):
            continue  # some other module's buffer named 'g': load_state_dict checks it
        device, dtype = model_device_dtype(old)
        has_bias = f"{name}.pointwise.bias" in state or f"{name}.bias" in state
        layer = GDWSConv2d(old.in_channels, old.out_channels, old.kernel_size, g, old.stride, old.padding,
                           old.dilation, has_bias, old.padding_mode, device=device, dtype=dtype)
        layer.train(old.training)
        model.set_submodule(name, layer)
    model.load_state_dict(state)
    return model
