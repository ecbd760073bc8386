"""How long a training will take, measured on its first steps; and a stop before a CPU spends days on it.

The paper's recipe (200 epochs of PGD-10 AT on a full-width network) is GPU work: on a CPU it takes weeks,
which a progress bar only shows in its first epoch's time. ``TrainingTimeEstimate`` times a few steps (after
warm-up ones), prints the estimated total on every device, and on a CPU stops a training estimated to exceed
``limit_s`` (a day) with one message naming the ways forward, unless ``allow_long``.
"""
from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl
import torch

from gdws.errors import CannotRun

DAY_S = 24 * 3600.0


class TrainingTooLong(CannotRun):
    """A CPU training estimated to take longer than the limit, stopped after its first steps (a refusal: run.py
    prints its message alone, though it is raised inside Lightning's fit loop)."""


def format_duration(seconds: float) -> str:
    """``seconds`` in the two largest units that matter: ``23.6 days``, ``2 h 50 min``, ``4 min 10 s``, ``12 s``."""
    if not math.isfinite(seconds):
        return "forever"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{seconds:.0f} s"


def too_long_message(estimate_s: float, device: str) -> str:
    """What a user reads when a training on ``device`` is stopped for its length: the ways forward."""
    return (f"training this network on the {device} would take about {format_duration(estimate_s)} (measured on its "
            "first steps), so it was stopped. Instead: load trained weights (weights.path=FILE), use a pre-trained "
            "zoo network (model=robustbench model.name=NAME), shrink the run (scale=cpu: 1/4 width, 5 epochs on "
            "10k images), or train on a GPU (device=cuda). To train here anyway: train.allow_long=true, best with "
            "train.amp=true (bf16 autocast: on CPUs with bf16 support it can nearly halve the time; compare with "
            "scripts/bench_train.py --amp)")


class TrainingTimeEstimate(pl.Callback):
    """Times ``timed_steps`` training steps after ``warmup_steps``, prints the estimated training time and, on a
    CPU, raises :class:`TrainingTooLong` when it exceeds ``limit_s`` (unless ``allow_long``).

    The estimate covers the training steps left in this fit (a resumed training counts only what remains);
    validation comes on top of it, so the stop rule errs on the side of letting a training run.
    """

    def __init__(self, allow_long: bool = False, limit_s: float = DAY_S, warmup_steps: int = 1,
                 timed_steps: int = 2) -> None:
        self.allow_long, self.limit_s = bool(allow_long), float(limit_s)
        self.warmup_steps, self.timed_steps = int(warmup_steps), int(timed_steps)
        self._seen, self._start, self._first_step = 0, 0.0, 0
        self.estimate_s: float | None = None

    def _now(self, trainer: pl.Trainer) -> float:
        device = trainer.strategy.root_device
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # kernels run asynchronously: wait for the step to be done
        return time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remember where this fit starts (a resumed training has steps behind it)."""
        self._seen, self._first_step, self.estimate_s = 0, trainer.global_step, None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Start the clock once the warm-up steps are done."""
        if self._seen == self.warmup_steps:
            self._start = self._now(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """After the timed steps: print the estimate, and stop a CPU training that would take too long."""
        self._seen += 1
        if self._seen != self.warmup_steps + self.timed_steps:
            return
        step_s = (self._now(trainer) - self._start) / self.timed_steps
        steps = trainer.estimated_stepping_batches - self._first_step
        self.estimate_s = step_s * steps
        device = trainer.strategy.root_device.type
        if trainer.is_global_zero:
            per_epoch = step_s * trainer.num_training_batches
            _print(trainer, f"training time estimate: {format_duration(self.estimate_s)} for {steps:,.0f} steps "
                            f"({step_s:.3g} s/step on {device}, {format_duration(per_epoch)} per epoch; validation "
                            "not included)")
        stop = device == "cpu" and self.estimate_s > self.limit_s and not self.allow_long
        if trainer.strategy.broadcast(stop, src=0):  # every DDP rank stops, or none does
            raise TrainingTooLong(too_long_message(self.estimate_s, device.upper()))


def _print(trainer: pl.Trainer, text: str) -> None:
    """Print ``text`` above the progress bar when there is one (a plain print would break its line)."""
    bar = trainer.progress_bar_callback
    if bar is not None and hasattr(bar, "print"):
        bar.print(text)
    else:
        print(text, flush=True)
