"""Load our own and third-party checkpoints into zoo models, with one clear error when they do not fit."""
from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from gdws.core.serialization import LOAD_ERRORS

#: Wrapper keys under which training scripts commonly store the weights (Lightning uses 'state_dict').
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
#: Prefixes added by DataParallel/DDP ('module.'), Lightning modules ('model.') and GDWS's original code ('basic_model.').
PREFIXES = ("module.", "model.", "basic_model.")
_SHOW = 5  # how many offending keys an error message lists


def _read(path: Path, trusted: bool) -> Any:
    """Deserialise ``path`` on the CPU, safely first."""
    # weights_only=True uses PyTorch's restricted unpickler: it can only rebuild tensors and plain containers,
    # so a malicious or foreign file cannot run code while we merely *look* at it. Older training scripts also
    # pickled objects such as argparse.Namespace next to the weights; only for that case ("Unsupported global")
    # and only when the caller trusts the file do we fall back to full unpickling.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not (trusted and "Unsupported global" in str(exc)):
            raise RuntimeError(
                f"{path} is not a readable PyTorch checkpoint (expected a file written by torch.save holding a "
                f"state_dict or a dict wrapping one; restricted unpickling failed: {str(exc).splitlines()[0][:200]}). "
                "Full unpickling can execute code stored in the file, so it is never done by default: if the file "
                "holds extra Python objects and you trust its source, pass trusted=True (weights.trusted=true in "
                "run.py, --trusted in the gdws CLI)."
            ) from exc
        warnings.warn(f"{path} holds non-tensor Python objects; loading it with full unpickling (trusted=True)")
    except LOAD_ERRORS as exc:  # truncated zip, random bytes, text file...
        raise RuntimeError(
            f"{path} is not a PyTorch checkpoint (expected a file written by torch.save holding a state_dict "
            f"or a dict wrapping one): {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        ) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except LOAD_ERRORS as exc:
        raise RuntimeError(f"{path} could not be unpickled as a PyTorch checkpoint: {type(exc).__name__}: {exc}") from exc


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def extract_state_dict(obj: Any, path: Union[str, PathLike] = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The tensor state_dict inside a loaded checkpoint object (plain, wrapped, Lightning, or a whole module)."""
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if key in obj and (isinstance(obj[key], (Mapping, nn.Module))):
                return extract_state_dict(obj[key], path)
        keys = [str(k) for k in list(obj)[:10]]
        raise RuntimeError(
            f"{path} holds a dict without weights (top-level keys: {keys}); expected a state_dict of tensors "
            f"or a dict with one of the keys {list(WRAPPER_KEYS)}"
        )
    raise RuntimeError(f"{path} holds a {type(obj).__name__}, not a state_dict; expected a dict of tensors")


def strip_prefixes(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (``module.``, ``model.``, ``basic_model.``) from the keys.

    A prefix is removed when every key carries it, or when keeping only the prefixed keys (as in a
    Lightning module that also stores non-model state) matches more of the model's keys.
    """
    def hits(sd: Mapping[str, Any]) -> int:
        return len(model_keys.intersection(sd))

    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if sub and (len(sub) == len(state) or hits(sub) > hits(state)):
                state, changed = sub, True
    return state


def _fmt(keys: list[str]) -> str:
    more = f", ... ({len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def load_checkpoint(model: nn.Module, path: Union[str, PathLike], strict: bool = True, trusted: bool = False) -> nn.Module:
    """Load the weights in ``path`` into ``model`` (in place) and return it.

    Accepts a plain state_dict, ``{'state_dict'|'model_state_dict'|'model'|'net': ...}`` wrappers, Lightning
    checkpoints (``model.``-prefixed keys) and ``module.``/``basic_model.`` prefixes. Normalisation buffers are
    non-persistent, so checkpoints saved without them load strictly. With ``strict=True`` any missing,
    unexpected or wrongly shaped key raises one RuntimeError listing them. Files are read with PyTorch's
    restricted unpickler; files that need full (code-executing) unpickling are refused unless ``trusted=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (pass the path of a file written by torch.save)")
    model_sd = model.state_dict()
    state = strip_prefixes(extract_state_dict(_read(path, trusted), path), set(model_sd))
    # BN's num_batches_tracked counter only matters with momentum=None; checkpoints from old PyTorch versions
    # lack it, so keep the model's own value instead of calling those keys missing.
    for k in model_sd:
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = model_sd[k]
    missing = [k for k in model_sd if k not in state]
    unexpected = [k for k in state if k not in model_sd]
    shape = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in model_sd.items()
             if k in state and state[k].shape != v.shape]
    if shape or (strict and (missing or unexpected)):
        gdws_keys = any(k.endswith((".pointwise.weight", ".index")) for k in unexpected)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_fmt(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_fmt(unexpected)}")
        if shape:
            parts.append(f"{len(shape)} shape mismatches (checkpoint vs model): {_fmt(shape)}")
        raise RuntimeError(
            f"checkpoint {path} does not fit {type(model).__name__}: " + "; ".join(parts)
            + ". Build the model the checkpoint was trained with (name, width, num_classes), or pass strict=False."
            + (" It looks like a GDWS-converted network: load it with gdws.load_converted." if gdws_keys else "")
        )
    model.load_state_dict(state, strict=strict)
    return model
