"""The GDWS constraint rule, applied to the command line before Hydra composes the config.

Exactly one of ``gdws.beta``, ``gdws.max_channels``, ``gdws.macs_ratio`` and ``gdws.speedup`` is active. The
one typed on the command line (``gdws.beta=0.5``, also a ``-m`` sweep over it) replaces whichever one the
defaults or an experiment set. The rule is a rewrite of the overrides: the typed constraint comes with the
other three set to null, so that Hydra composes, and saves in each job's ``.hydra/config.yaml``, exactly the
one constraint that runs. This module imports nothing heavy: run.py applies it before Hydra starts.
"""
from __future__ import annotations

from collections.abc import Sequence

CONSTRAINTS = ("beta", "max_channels", "macs_ratio", "speedup")
_NULL = ("null", "none", "")


def _split(item: str) -> tuple[str, str, str] | None:
    """(prefix, constraint name, value) of a ``[+|++]gdws.<constraint>=<value>`` override, else None."""
    if item.startswith("-") or "=" not in item:  # a flag such as -m or --config-name=...
        return None
    key, _, value = item.partition("=")
    prefix = key[: len(key) - len(key.lstrip("+"))]
    key = key[len(prefix):]
    if key.startswith("gdws.") and key[5:] in CONSTRAINTS:
        return prefix, key[5:], value
    return None


def typed_constraints(overrides: Sequence[str]) -> dict[str, str]:
    """{constraint: value} for each constraint typed in ``overrides`` with a non-null value."""
    typed = {}
    for item in overrides:
        parts = _split(item)
        if parts and parts[2].strip().lower() not in _NULL:
            typed[parts[1]] = parts[2]
    return typed


def with_typed_constraint(overrides: Sequence[str]) -> list[str]:
    """``overrides`` with ``gdws.<c>=null`` for each constraint ``c`` not mentioned in them, inserted right
    after the one typed constraint; unchanged when no constraint or two are typed (``validate`` refuses two).

    The nulls use ``++`` when the typed constraint does (forcing the key), the plain form otherwise.
    """
    overrides = list(overrides)
    typed = typed_constraints(overrides)
    if len(typed) != 1:
        return overrides
    split = [_split(item) for item in overrides]
    mentioned = {parts[1] for parts in split if parts}
    position = max(i for i, parts in enumerate(split) if parts and parts[1] in typed)
    plus = "++" if split[position][0] else ""
    nulls = [f"{plus}gdws.{name}=null" for name in CONSTRAINTS if name not in mentioned]
    return overrides[: position + 1] + nulls + overrides[position + 1:]
