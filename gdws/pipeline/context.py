"""Small helpers shared by the pipeline steps: device choice, Hydra choices, settings keys."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise ``torch.device(name)`` (checked to exist)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} was requested but CUDA is not available here; pass device=cpu or device=auto")
    return device


def choice(group: str, default: str = "") -> str:
    """The option picked for config group ``group`` in this Hydra run (e.g. 'cifar10' for data)."""
    try:
        return str(HydraConfig.get().runtime.choices.get(group) or default)
    except ValueError:  # composed outside @hydra.main (HydraConfig not set)
        return default


def to_plain(cfg: DictConfig | Any) -> Any:
    """A resolved plain-Python copy of ``cfg`` (or ``cfg`` itself when it is not an OmegaConf node)."""
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def settings_key(settings: Any, length: int = 10) -> str:
    """A short stable hash of JSON-able ``settings`` (names cache files by what produced them)."""
    blob = json.dumps(to_plain(settings), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:length]
