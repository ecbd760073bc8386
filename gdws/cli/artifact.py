"""The converted-model file that `gdws convert` writes and `gdws export` reads: weights plus how to rebuild them.

A file holds {"format", "meta", "state_dict"}: meta records the model name, width, number of classes,
normalisation and conversion settings, so the architecture can be rebuilt with gdws.models.create_model and
the GDWS layers loaded with gdws.core.load_converted.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from gdws.core import load_converted
from gdws.models import create_model

FORMAT = "gdws-converted/1"


def save_converted_file(model: nn.Module, meta: dict, path: str | os.PathLike) -> Path:
    """Write ``model``'s state_dict with ``meta`` (must name model, width, num_classes, normalize); returns the path."""
    missing = {"model", "width", "num_classes", "normalize"} - set(meta)
    if missing:
        raise ValueError(f"meta lacks {sorted(missing)}: they are needed to rebuild the architecture")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "meta": meta, "state_dict": model.state_dict()}, path)
    return path


def load_converted_file(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Rebuild the eval-mode converted model and its metadata from a file written by `save_converted_file`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no converted model at {path}; create one with `gdws convert CHECKPOINT ... -o {path}`")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by `gdws convert` (missing format {FORMAT!r}); convert it first")
    meta = data["meta"]
    model = create_model(meta["model"], num_classes=meta["num_classes"], width=meta["width"],
                         normalize=meta["normalize"])
    return load_converted(model, data["state_dict"]).eval(), meta
