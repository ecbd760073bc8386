"""Check the composed config before anything is trained or loaded, and settle the GDWS constraint.

A run may take hours; a typo in a GDWS value, an alpha mode, an attack or a checkpoint path must fail in
seconds, with one message saying what to type instead. ``validate(cfg)`` is the first thing ``run`` does.

The GDWS constraint rule: exactly one of ``gdws.beta``, ``gdws.max_channels``, ``gdws.macs_ratio`` and
``gdws.speedup`` is active. A constraint typed on the command line (``gdws.beta=0.5``, also inside a ``-m``
sweep) replaces whichever one the defaults or an experiment set; typing two is the one error.
"""
from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object
from omegaconf import DictConfig, open_dict

from gdws.pipeline.context import resolve_device

CONSTRAINTS = ("beta", "max_channels", "macs_ratio", "speedup")
ALPHA_MODES = ("none", "pgd", "clean")
STAGES = ("all", "train")


def typed_overrides() -> list[str]:
    """The ``key=value`` overrides typed for this job (empty outside ``@hydra.main``)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # composed with hydra.compose (tests, scripts): no command line
        return []


def _typed_constraints(overrides: list[str]) -> dict[str, str]:
    """{constraint: value} for each ``[+|++]gdws.<constraint>=<value>`` typed with a non-null value."""
    typed = {}
    for item in overrides:
        key, _, value = item.lstrip("+").partition("=")
        if key.startswith("gdws.") and key[5:] in CONSTRAINTS and value.strip().lower() not in ("null", "none", ""):
            typed[key[5:]] = value
    return typed


def settle_constraint(cfg: DictConfig, overrides: list[str] | None = None) -> str | None:
    """Keep exactly one GDWS constraint in ``cfg.gdws`` (in place) and return it as ``name=value``.

    None when GDWS is off. Raises ValueError for two constraints typed at once, or none/two set by configs.
    """
    g = cfg.gdws
    if not g.get("enabled", False):
        return None
    typed = _typed_constraints(typed_overrides() if overrides is None else overrides)
    if len(typed) > 1:
        raise ValueError(f"two GDWS constraints typed on the command line ({', '.join(f'gdws.{k}={v}' for k, v in typed.items())}); "
                         "type one of gdws.beta / gdws.max_channels / gdws.macs_ratio / gdws.speedup")
    with open_dict(g):
        if typed:
            for name in CONSTRAINTS:
                if name not in typed:
                    g[name] = None
        active = [name for name in CONSTRAINTS if g.get(name) is not None]
    if len(active) != 1:
        raise ValueError(f"the config sets {len(active)} GDWS constraints ({active or 'none'}); set exactly one of "
                         "gdws.beta, gdws.max_channels, gdws.macs_ratio, gdws.speedup (or gdws=none for no conversion)")
    return f"{active[0]}={g[active[0]]}"


def _check_gdws(g: DictConfig) -> None:
    """Values of the active constraint and the alpha mode."""
    if not g.get("enabled", False):
        return
    checks = {
        "beta": (lambda v: v >= 0, "a number >= 0 (the per-layer weighted error bound)"),
        "max_channels": (lambda v: float(v).is_integer() and v >= 0, "an integer >= 0 (G per layer)"),
        "macs_ratio": (lambda v: v >= 1, "a number >= 1 (MACs before / MACs after)"),
        "speedup": (lambda v: v >= 1, "a number >= 1 (dense latency / GDWS latency)"),
    }
    for name, (ok, what) in checks.items():
        value = g.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value)):
            raise ValueError(f"gdws.{name} must be {what}; got {value!r}")
    mode = str(g.get("alphas")).lower() if g.get("alphas") is not None else "none"
    if mode not in ALPHA_MODES:
        raise ValueError(f"gdws.alphas must be one of {ALPHA_MODES}; got {g.get('alphas')!r}")


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
    """Check ``cfg`` as a whole (values, paths, device, importable targets) and settle the GDWS constraint.

    Returns the active constraint (``name=value``) or None. Raises ValueError / FileNotFoundError /
    RuntimeError with one clear message; nothing has been trained, loaded or written when it does.
    """
    if str(cfg.get("stage", "all")) not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}; got {cfg.stage!r}")
    resolve_device(str(cfg.device))  # device=cuda without a GPU fails here
    path = cfg.weights.get("path")
    if path and not Path(str(path)).expanduser().is_file():
        raise FileNotFoundError(f"weights.path={path} is not a file (pass the path of a file written by torch.save)")
    if cfg.prune.get("_target_") is not None:
        from gdws.prune.phase import check_ratio  # imported here: gdws.prune loads torch-pruning

        check_ratio(cfg.prune.get("ratio"))  # the pruning methods' own check, here before any training
    for node, what in ((cfg.prune, "prune"), (cfg.get("attack"), "attack"), (cfg.train, "train"),
                       (cfg.model, "model"), (cfg.data, "data")):
        _check_target(node, what)
    _check_gdws(cfg.gdws)
    return settle_constraint(cfg)
