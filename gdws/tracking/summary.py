"""What a run tells its user when it ends: a short summary of its row, and after a ``-m`` sweep one line per job.

The row (CSV line and row.json) holds everything; the summary picks what a user reads first: accuracies and the
attack, size, MACs and speed against the dense network with their ratios, what was converted, and where the
row and the run folder are.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def _ratio(dense: Any, value: Any) -> float | None:
    """dense / value (how many times smaller or faster), None when either is missing or zero."""
    try:
        return float(dense) / float(value) if float(value) else None
    except (TypeError, ValueError):
        return None


def _accuracy(row: Mapping[str, Any]) -> str:
    """A_nat and A_rob with the attack (or why there is no A_rob)."""
    text = f"A_nat {row['A_nat']:.2f} %"
    if row.get("A_rob") is None:
        return text + "   A_rob -   (attack=none)"
    text += f"   A_rob {row['A_rob']:.2f} %   ({row['attack']}, {row['n_eval']} images)"
    if row.get("attack_ran") is False:
        text += ("\n           NOTE: the attack could not run (the model's output has no gradient path to its "
                 "input): A_rob = A_nat")
    return text


#: the word for a ratio below 1 of each gain: "0.51x faster" reads "1.96x slower"
_LOSS = {"faster": "slower", "smaller": "larger", "fewer": "more"}


def relative(ratio: float | None, gain: str) -> str:
    """``2.00x faster`` for a ratio >= 1, ``1.96x slower`` (1 / ratio, with the opposite word) below 1; ``-`` when
    there is no ratio. ``gain`` is one of "faster", "smaller", "fewer"."""
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x {gain}" if ratio >= 1 else f"{1 / ratio:.2f}x {_LOSS[gain]}"


def _versus(label: str, value: Any, dense: Any, unit: str, scale: float, digits: int, gain: str) -> str | None:
    """``label  value  dense X  r x <gain>`` for one quantity; None when the value is missing."""
    if value is None or value == "":
        return None
    text = f"{label:<10} {f'{float(value) / scale:.{digits}f}{unit}':<17}"
    ratio = _ratio(dense, value) if gain != "faster" else _ratio(value, dense)
    if dense is not None and ratio is not None:
        text += f"dense {f'{float(dense) / scale:.{digits}f}{unit}':<17}{relative(ratio, gain)}"
    return text.rstrip()


def _runtime(row: Mapping[str, Any]) -> str | None:
    """What the speeds were timed on: runtime, its version, threads and the device."""
    if not row.get("runtime"):
        return None
    version = row.get("runtime_version") or ""
    return f"{'timed on':<10} {row['runtime']} {version}, {row.get('threads')} threads, {row.get('device')}"


def _conversion(row: Mapping[str, Any]) -> str:
    """The network and what was done to it."""
    width = f" (width {row['width']})" if row.get("width") not in (None, 1, 1.0) else ""
    done = []
    if row.get("prune_method"):
        done.append(f"{row['prune_method']} pruning (ratio {row.get('prune_ratio')})")
    if row.get("gdws_constraint"):
        data = ""
        if row.get("gdws_calibration") not in (None, "none"):
            data = (f", {row['gdws_calibration']} calibration on {row.get('gdws_calibration_samples')} images "
                    f"(whiten {row.get('gdws_whiten')}, refit {row.get('gdws_refit')}, fisher {row.get('gdws_fisher')}"
                    + (f", refit rounds {row['gdws_refit_rounds']}" if row.get("gdws_refit_rounds") else "") + ")")
        removed = (f" ({row['gdws_removed']} of them REMOVED: G = 0, a constant output)"
                   if row.get("gdws_removed") else "")
        done.append(f"GDWS {row['gdws_constraint']} (alphas {row.get('gdws_alphas')}{data}, {row.get('gdws_form')} "
                    f"form): {row.get('gdws_layers')} layers converted{removed}")
    return f"{row['model']}{width}, " + (" + ".join(done) or "dense")


def run_summary(row: Mapping[str, Any], runs_csv: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """The end-of-run summary of ``row`` (a few lines, ready to print)."""
    lines = [f"\n== run finished: {_conversion(row)}", f"{'accuracy':<10} {_accuracy(row)}",
             _versus("size", row.get("size_MB"), row.get("size_MB_dense"), " MB", 1, 3, "smaller"),
             _versus("MACs", row.get("macs"), row.get("macs_dense"), " M", 1e6, 2, "fewer"),
             _versus("FPS", row.get("fps"), row.get("fps_dense"), "", 1, 1, "faster"),
             _versus("throughput", row.get("throughput"), row.get("throughput_dense"), " img/s", 1, 1, "faster"),
             _runtime(row)]
    if row.get("gdws_speedup_measured") is not None:
        target = row["gdws_constraint"].partition("=")[2]
        missed = float(row["gdws_speedup_measured"]) < float(target)
        lines.append(f"{'speed-up':<10} measured {float(row['gdws_speedup_measured']):.2f}x for speedup={target}"
                     + ("   (target MISSED)" if missed else ""))
    if row.get("fast_forms"):
        lines.append(f"{'forms':<10} {row['fast_forms']}")
    lines += [f"{'row':<10} {runs_csv}  (and row.json in the run folder)", f"{'run folder':<10} {run_dir}"]
    return "\n".join(line for line in lines if line)


def job_line(row: Mapping[str, Any]) -> str:
    """One line for a sweep's job: what ran and its headline numbers."""
    rob = f"A_rob {row['A_rob']:.2f}" if row.get("A_rob") is not None else "A_rob -"
    if row.get("attack_ran") is False:
        rob += " (attack could not run)"
    removed = f" ({row['gdws_removed']} layers REMOVED)" if row.get("gdws_removed") else ""
    return " | ".join([
        row["method"] + (f" {row['gdws_constraint']}" if row.get("gdws_constraint") else "") + removed,
        f"A_nat {row['A_nat']:.2f}", rob,
        f"size {relative(_ratio(row.get('size_MB_dense'), row.get('size_MB')), 'smaller')}",
        f"MACs {relative(_ratio(row.get('macs_dense'), row.get('macs')), 'fewer')}",
        f"FPS {relative(_ratio(row.get('fps'), row.get('fps_dense')), 'faster')}"
        + (f" ({row['runtime']})" if row.get("runtime") not in (None, "", "torch") else ""),
    ])


def sweep_summary(sweep_dir: str | os.PathLike) -> str:
    """One line per job folder of a sweep: the overrides that differ between jobs, then :func:`job_line`."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()),
                  key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    typed = {job: yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or [] for job in jobs}
    shared = set.intersection(*(set(t) for t in typed.values())) if typed else set()
    lines = [f"== sweep finished: {len(jobs)} jobs in {sweep_dir}"]
    for job in jobs:
        own = " ".join(o for o in typed[job] if o not in shared)
        row_file = job / "row.json"
        result = job_line(json.loads(row_file.read_text())) if row_file.is_file() else "no row (stage=train or failed)"
        lines.append(f"job {job.name}{f' ({own})' if own else ''}: {result}")
    return "\n".join(lines)


class SweepSummary(Callback):
    """Hydra callback (conf/hydra/default.yaml): prints :func:`sweep_summary` when a ``-m`` sweep ends.

    It reads the jobs' row.json files, so it works whatever launcher ran the jobs (locally or on SLURM).
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Print one line per job of the sweep that just ended."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if sweep_dir.is_dir():
            print(sweep_summary(sweep_dir), flush=True)
