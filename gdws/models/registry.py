"""timm-style model registry: ``@register_model`` builders, ``create_model`` and ``list_models``."""
from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from gdws.models.normalize import NormalizeSpec

ModelBuilder = Callable[..., nn.Module]

_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(fn: ModelBuilder) -> ModelBuilder:
    """Register a builder under its function name.

    The builder must accept ``num_classes``, ``width`` and ``normalize`` keyword arguments (plus
    any family-specific ones) and return an ``nn.Module`` taking [0, 1] images.
    """
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice; give the builder a different name")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def create_model(
    name: str,
    num_classes: int = 10,
    width: float = 1.0,
    normalize: NormalizeSpec = "cifar10",
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: one of :func:`list_models`.
        num_classes: size of the output layer.
        width: multiplies every channel count (1.0 is the paper's model).
        normalize: ``"cifar10"``, ``"svhn"``, ``"imagenet"``, ``None`` or ``(mean, std)``; applied inside the model.
        **kwargs: family-specific options (e.g. ``base_width`` for ``resnet20``).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(list_models())}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not float(width) > 0:
        raise ValueError(f"width must be > 0 (1.0 is the paper's model), got {width!r}")
    builder = _REGISTRY[name]
    accepted = set(inspect.signature(builder).parameters) - {"num_classes", "width", "normalize"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"model {name!r} got unknown options {unknown}; it accepts num_classes, width, normalize"
                         + (f" and {sorted(accepted)}" if accepted else " only"))
    return builder(num_classes=num_classes, width=float(width), normalize=normalize, **kwargs)


def scale_channels(channels: int, width: float) -> int:
    """Channel count ``channels * width`` rounded to the nearest int, at least 1."""
    return max(1, int(round(channels * width)))
