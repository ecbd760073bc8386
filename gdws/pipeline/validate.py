"""Check the composed config before anything is trained or loaded, and name the active GDWS constraint.

A run may take hours; a typo in a GDWS value, an alpha mode, an attack or a checkpoint path must fail in
seconds, with one message saying what to type instead. ``validate(cfg)`` is the first thing ``run`` does.
Each value is checked by the function that will use it (the core's ``check_*``), so the two cannot disagree.

The GDWS constraint rule (one active; the typed one wins) is applied to the command line before composition
(gdws.pipeline.constraint): here the composed config must hold exactly one.
"""
from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object
from omegaconf import DictConfig

from gdws.core.allocation import check_beta, check_max_channels
from gdws.core.budget import check_macs_ratio, check_speedup
from gdws.errors import KINDS, Refusal, as_refusal
from gdws.pipeline.calibration import check_calibration
from gdws.pipeline.constraint import CONSTRAINTS, typed_constraints
from gdws.pipeline.context import resolve_device
from gdws.pipeline.scale import check_scale

ALPHA_MODES = ("none", "pgd", "clean")
STAGES = ("all", "train")
_CHECKS = {"beta": check_beta, "max_channels": check_max_channels, "macs_ratio": check_macs_ratio,
           "speedup": check_speedup}


def typed_overrides() -> list[str]:
    """The ``key=value`` overrides typed for this job (empty outside ``@hydra.main``)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # composed with hydra.compose (tests, scripts): no command line
        return []


def active_constraint(cfg: DictConfig) -> str | None:
    """The one GDWS constraint set in ``cfg.gdws``, as ``name=value``; None when GDWS is off.

    Raises ValueError when two constraints are typed at once, or when the configs set none or two.
    """
    g = cfg.gdws
    if not g.get("enabled", False):
        return None
    typed = typed_constraints(typed_overrides())
    if len(typed) > 1:
        raise ValueError(f"two GDWS constraints typed on the command line "
                         f"({', '.join(f'gdws.{k}={v}' for k, v in typed.items())}); "
                         "type one of gdws.beta / gdws.max_channels / gdws.macs_ratio / gdws.speedup")
    active = [name for name in CONSTRAINTS if g.get(name) is not None]
    if len(active) != 1:
        raise ValueError(f"the config sets {len(active)} GDWS constraints ({active or 'none'}); set exactly one of "
                         "gdws.beta, gdws.max_channels, gdws.macs_ratio, gdws.speedup (or gdws=none for no conversion)")
    return f"{active[0]}={g[active[0]]}"


def _check_gdws(g: DictConfig) -> None:
    """The constraint's value (with the check of the function that uses it), the alpha mode and the data-aware
    settings."""
    if not g.get("enabled", False):
        return
    for name, check in _CHECKS.items():
        if g.get(name) is not None:
            try:
                check(g[name])
            except ValueError as err:
                raise ValueError(f"gdws.{name}={g[name]!r}: {err}") from None
    mode = str(g.get("alphas")).lower() if g.get("alphas") is not None else "none"
    if mode not in ALPHA_MODES:
        raise ValueError(f"gdws.alphas must be one of {ALPHA_MODES}; got {g.get('alphas')!r}")
    check_calibration(g)


def _check_target(node: DictConfig | None, what: str) -> None:
    """``node._target_`` (when set) must name an importable object."""
    target = node.get("_target_") if node is not None else None
    if target is None:
        return
    try:
        get_object(str(target))
    except (ImportError, AttributeError, ValueError) as err:  # what Hydra's locate raises for a bad path
        raise ValueError(f"{what}._target_={target!r} cannot be imported: {err}") from err


def validate(cfg: DictConfig) -> str | None:
    """Check ``cfg`` as a whole (values, paths, device, importable targets) and name the GDWS constraint.

    Returns the active constraint (``name=value``) or None. Raises a refusal (gdws.errors: BadValue, MissingInput,
    CannotRun, i.e. a ValueError, FileNotFoundError or RuntimeError) with one clear message; nothing has been
    trained, loaded or written when it does.
    """
    try:
        return _validate(cfg)
    except Refusal:
        raise
    except tuple(base for base, _ in KINDS) as err:  # what the checks raise: the user's setting, not a bug
        raise as_refusal(err) from err


def _validate(cfg: DictConfig) -> str | None:
    if str(cfg.get("stage", "all")) not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}; got {cfg.stage!r}")
    resolve_device(str(cfg.device))  # device=cuda without a GPU fails here
    path = cfg.weights.get("path")
    if path and not Path(str(path)).expanduser().is_file():
        raise FileNotFoundError(f"weights.path={path} is not a file (pass the path of a file written by torch.save)")
    check_scale(cfg)  # a shrunk run is not labelled paper
    _check_gdws(cfg.gdws)
    constraint = active_constraint(cfg)
    # last: the checks below import the pruning methods and every target (Lightning with the training recipe)
    if cfg.prune.get("_target_") is not None:
        from gdws.prune.phase import check_ratio  # imported here: gdws.prune loads torch-pruning

        check_ratio(cfg.prune.get("ratio"))  # the pruning methods' own check, here before any training
    for node, what in ((cfg.prune, "prune"), (cfg.get("attack"), "attack"), (cfg.train, "train"),
                       (cfg.model, "model"), (cfg.data, "data")):
        _check_target(node, what)
    return constraint
