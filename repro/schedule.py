"""Deadline decisions of the run (pure): whether a step can still run, and how long it may take.

Estimates are made before any GPU was seen, so once GPU-bound steps have run, the remaining GPU-bound estimates
are rescaled by how long those steps really took (measured / estimated).
"""
from __future__ import annotations

from dataclasses import dataclass

DONE = ("ok", "not needed")      # states that satisfy a dependency
RESERVE_S = 5.0                  # kept free before the deadline for the final writes
FACTOR_RANGE = (0.25, 4.0)       # a rescaling outside this says more about one odd step than about the machine


@dataclass
class Outcome:
    """What happened to one step: ``status`` ok | failed | timeout | skipped | not needed."""

    status: str
    wall_s: float = 0.0
    estimate_s: float = 0.0
    gpu_bound: bool = False
    reason: str = ""
    rc: int | None = None


def speed_factor(outcomes: dict[str, Outcome]) -> float:
    """Measured over estimated time of the finished GPU-bound steps (1.0 before any), clamped to FACTOR_RANGE."""
    done = [o for o in outcomes.values() if o.gpu_bound and o.status == "ok" and o.estimate_s > 0]
    if not done:
        return 1.0
    factor = sum(o.wall_s for o in done) / sum(o.estimate_s for o in done)
    return min(max(factor, FACTOR_RANGE[0]), FACTOR_RANGE[1])


def predicted_s(estimate_s: float, gpu_bound: bool, factor: float) -> float:
    """The time a step is expected to take now (GPU-bound estimates rescaled by ``factor``)."""
    return estimate_s * factor if gpu_bound else estimate_s


def skip_reason(name: str, needs: tuple[str, ...], estimate_s: float, gpu_bound: bool,
                outcomes: dict[str, Outcome], elapsed_s: float, deadline_s: float) -> str | None:
    """Why step ``name`` must not start now (None: it may).

    A step is skipped when a step it needs did not succeed, or when its predicted time does not fit in what is
    left before the deadline (minus RESERVE_S for the final writes).
    """
    for need in needs:
        got = outcomes.get(need)
        if got is None or got.status not in DONE:
            return f"needs {need}, which {'did not run' if got is None else got.status}"
    left = deadline_s - RESERVE_S - elapsed_s
    expected = predicted_s(estimate_s, gpu_bound, speed_factor(outcomes))
    if expected > left:
        return f"cannot finish before the deadline: needs about {expected:.0f} s, {max(left, 0):.0f} s left"
    return None


def time_limit(cap_s: float | None, elapsed_s: float, deadline_s: float) -> float:
    """Seconds a starting step may run: up to the deadline (minus RESERVE_S) and its own cap."""
    left = max(deadline_s - RESERVE_S - elapsed_s, 0.0)
    return min(left, cap_s) if cap_s is not None else left
