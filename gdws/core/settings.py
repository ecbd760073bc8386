"""The settings of a data-aware conversion, with their defaults and validation in one place.

``CalibrationSettings`` is what ``convert(..., calibration=images)`` does with the images; the pipeline builds it
from the ``gdws`` config group (same key names) and the command line from its flags, so a new option is a new
field here (plus its config default). The defaults are the best measured settings (README, "The core, on your
model"): whitening, the pointwise refit and the K-FAC Fisher weighting, which the committed headline rows used
(results/cpu/README.md; on the third-party ResNet-20 it is +2.1 points at 3x, results/real_resnet20/calibration/),
and residual targets wherever the refit is sequential (+0.6 / +1.0 points at 3x / 4x on ResNet-20, no change on a
network without residual adds: results/calibration_depth/).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

GIB = 1 << 30


def check_refit_rounds(rounds: int, refitting: bool = True) -> int:
    """``rounds`` if it is a non-negative int (and 0 unless the conversion refits), else one ValueError."""
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 0:
        raise ValueError(f"refit_rounds must be a non-negative integer (0: pointwise refit only), got {rounds!r}")
    if rounds and not refitting:
        raise ValueError("refit_rounds > 0 needs a calibration set and refit=True (it refits both GDWS stages on "
                         "calibration data); pass calibration= or set refit_rounds=0")
    return int(rounds)


def check_positive(value: object, name: str) -> None:
    """One ValueError unless ``value`` is a finite real number > 0 (not a bool); ``name`` names the setting."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class CalibrationSettings:
    """How a calibration set is used (gdws.core.convert); every field is checked when the object is made.

    whiten: allocation scores and kernels from each layer's input-whitened decomposition.
    refit: closed-form least-squares refit of each converted layer's pointwise stage and bias, in forward order.
    fisher: weight each layer's output error by its K-FAC Fisher factor (one backward pass per batch);
        None (default): on whenever whiten is and it applies (a model that returns logits [N, K], each converted
        layer called once per forward), off otherwise (whiten=False then keeps the weight-only kernels).
    refit_rounds: rounds of alternating depthwise / pointwise least squares after the pointwise refit.
    ridge: relative ridge of the whitening and of every least-squares solve.
    batch_size: images per forward pass (the refit may use fewer to stay within calibration_memory).
    calibration_memory: GiB the sequential refit may hold (activation caches of the whole calibration set plus
        one batch's working memory); a budget below what one image needs is one ValueError.
    sequential: refit block by block on cached activations (cost linear in depth). None: wherever the model's
        forward can be cut into pieces (checked against model(x)), else the layer-by-layer path; True: required
        (a ValueError where it cannot); False: always the layer-by-layer path (one pass per converted layer).
    progress: a progress bar (layer k of L, with an ETA) on stderr.
    residual_target: where a converted conv feeds a residual add (through at most a BatchNorm), refit it to the
        block's output instead of its own: its target also absorbs the shortcut's error (gdws.core.residual_target).
        None (default): wherever the sequential refit runs (the layer-by-layer fallback keeps the plain targets);
        True: required (with sequential not false); False: plain targets everywhere.
    bn_recalibration: after the refit, re-estimate every BatchNorm's running statistics on the calibration images
        through the converted network.
    """

    whiten: bool = True
    refit: bool = True
    fisher: bool | None = None
    refit_rounds: int = 0
    ridge: float = 1e-6
    batch_size: int = 64
    calibration_memory: float = 4.0
    sequential: bool | None = None
    progress: bool = True
    residual_target: bool | None = None
    bn_recalibration: bool = False

    def __post_init__(self) -> None:
        for name in ("whiten", "refit", "progress", "bn_recalibration"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("fisher", "sequential", "residual_target"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true, false or null (automatic), got {getattr(self, name)!r}")
        check_refit_rounds(self.refit_rounds, self.refit)
        if self.residual_target and (not self.refit or self.sequential is False):
            raise ValueError("residual_target=True changes the sequential refit's targets: it needs refit=True and "
                             "sequential not false")
        if not (isinstance(self.ridge, numbers.Real) and not isinstance(self.ridge, bool)
                and math.isfinite(self.ridge) and self.ridge >= 0):
            raise ValueError(f"ridge must be a finite number >= 0, got {self.ridge!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, numbers.Integral) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        check_positive(self.calibration_memory, "calibration_memory (GiB)")

    def use_fisher(self, applies: bool = True) -> bool:
        """Whether the Fisher weighting runs: ``fisher``, or when it is None, ``whiten`` where it ``applies`` (a
        model that returns logits [N, K], each layer called once per forward)."""
        return (self.whiten and applies) if self.fisher is None else self.fisher

    @property
    def memory_bytes(self) -> int:
        """calibration_memory in bytes."""
        return int(self.calibration_memory * GIB)

    def as_dict(self) -> dict:
        """The fields as a plain dict, e.g. for a result row."""
        return asdict(self)

    @classmethod
    def from_options(cls, base: "CalibrationSettings | None" = None, **options: object) -> "CalibrationSettings":
        """``base`` (default: the defaults) with ``options`` replaced; an unknown name is one ValueError."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(f"unknown calibration setting(s) {unknown}; the settings are {names}")
        return replace(base or cls(), **options)

    @classmethod
    def from_config(cls, config: Mapping, prefix: str = "gdws.") -> "CalibrationSettings":
        """The settings named in ``config`` (other keys ignored); errors name the key with ``prefix``."""
        options = {f.name: config[f.name] for f in fields(cls) if f.name in config}
        try:
            return cls(**options)
        except ValueError as exc:
            raise ValueError(f"{prefix}{exc}") from None
