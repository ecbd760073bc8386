"""Runs the run's steps under the deadline and keeps the output folder current after every step.

Every step but the preload is a process of its own (forked from the runner, or fresh; in its own session,
killed with its children at its time limit), its output goes to a log file, and after it ends the runner
rewrites the report files in the output folder: so a run cut off at any point still returns everything
finished before. What it leaves there (within :class:`repro.parts.Limits`):
``report.json`` (plan, per-step status and wall time, commands, device, training throughput, weight manifests),
``runs.csv`` (the rows), ``speed.csv`` (GPU speed), ``logs.tar.gz`` (step logs, run configs, training curves),
and the weight parts ``<network>_fp16.pt.partN``.
"""
from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Callable

from repro import forked, schedule
from repro.parts import Limits, MiB, out_budget, part_names, split_file
from repro.plan import Paths, Scale, Step

REPORT_FILES = ("report.json", "runs.csv", "speed.csv", "logs.tar.gz")
REPORT_RESERVE_BYTES = 4 * MiB   # room kept for the report files while weight parts are added
LOG_CAP_BYTES = MiB              # a longer log keeps its end
SMALL_SUFFIXES = (".yaml", ".json", ".csv", ".log")

Executor = Callable[[Step, float, Path], schedule.Outcome]


class DeadlineRun:
    """The steps, their outcomes and the report; :meth:`run` executes them in order.

    With ``fork`` (the default) Python steps are forked from this process once the ``preload`` step has imported
    the libraries (repro.forked); otherwise each is a fresh process. ``execute`` replaces the execution of
    a step (tests). ``elapsed_before_s``: seconds the command ran before (imports, planning), counted against
    the deadline.
    """

    def __init__(self, steps: list[Step], scale: Scale, paths: Paths, out: Path, deadline_s: float,
                 env: dict[str, str] | None = None, clock: Callable[[], float] = time.monotonic,
                 execute: Executor | None = None, plan_text: str = "", fork: bool = True,
                 elapsed_before_s: float = 0.0, limits: Limits = Limits()) -> None:
        self.steps, self.scale, self.paths, self.out, self.deadline_s = steps, scale, paths, Path(out), deadline_s
        self.env, self.clock = env if env is not None else dict(os.environ), clock
        self.execute = execute or self._execute
        self.fork, self.preloaded = fork, False
        self.elapsed_before_s = elapsed_before_s  # the deadline counts from the command's start
        self.limits = limits
        self.outcomes: dict[str, schedule.Outcome] = {}
        self.logs = paths.work / "logs"
        self.report = {"scale": scale.name, "deadline_s": deadline_s, "plan": plan_text.splitlines(), "steps": [],
                       "device": None, "training": {}, "weights": {}, "forked_steps": fork, "finished": False}

    # ---- running ----------------------------------------------------------------------------------
    def run(self) -> int:
        """Run every step that can still finish; 0 when none failed or timed out, else 1."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        start = self.clock() - self.elapsed_before_s
        for i, step in enumerate(self.steps):
            at = self.clock() - start
            reason = step.not_needed or schedule.skip_reason(step.name, step.needs, step.estimate_s, step.gpu_bound,
                                                             self.outcomes, at, self.deadline_s)
            predicted = schedule.predicted_s(step.estimate_s, step.gpu_bound, schedule.speed_factor(self.outcomes))
            if reason:
                got = schedule.Outcome("not needed" if step.not_needed else "skipped", reason=reason)
            else:
                limit = schedule.time_limit(step.cap_s, at, self.deadline_s)
                got = self.execute(step, limit, self.logs / f"{i:02d}-{step.name}.log")
                if got.status == "ok" and step.collect:
                    got.reason = "; ".join(r for r in (got.reason, self._collect(step)) if r)
            got.estimate_s, got.gpu_bound = step.estimate_s, step.gpu_bound
            self.outcomes[step.name] = got
            self._record(step, got, at, predicted)
            self.report["elapsed_s"] = round(self.clock() - start, 1)
            self.write_outputs()
            ran = got.status not in ("skipped", "not needed")
            print(f"[{at:5.0f} s] phase {step.phase} {step.name}: {got.status}"
                  + (f" in {got.wall_s:.0f} s (estimate {predicted:.0f} s)" if ran else "")
                  + (f" - {got.reason}" if got.reason else ""), flush=True)
        self.report["finished"] = True
        self.write_outputs()
        return 1 if any(o.status in ("failed", "timeout") for o in self.outcomes.values()) else 0

    def _execute(self, step: Step, limit: float, log_path: Path) -> schedule.Outcome:
        """Run one step: the preload inside this process, any other as a forked child or a fresh process."""
        if step.action == "preload":
            return self._preload()
        got = self._process(step, limit, log_path, fork=self.fork and self.preloaded)
        if step.collect == "device" and got.status == "failed" and self.fork and self.preloaded:
            # a forked child could not use the device: run this and every later step as a fresh process
            retry = self._process(step, max(limit - got.wall_s, 1.0), log_path, fork=False)
            if retry.status == "ok":
                self.fork = self.report["forked_steps"] = False
                retry.reason = "failed when forked, ok as a fresh process: later steps run as fresh processes"
                retry.wall_s += got.wall_s
            return retry
        return got

    def _preload(self) -> schedule.Outcome:
        """Import the libraries once (for the forked steps); on failure the steps run as fresh processes."""
        if not self.fork:
            return schedule.Outcome("not needed", reason="steps run as fresh processes (--no-fork)")
        start = self.clock()
        try:
            forked.preload(self.paths.work / "site")
        except Exception as exc:  # noqa: BLE001  (fresh processes will show the real error in their logs)
            self.fork = self.report["forked_steps"] = False
            return schedule.Outcome("failed", self.clock() - start, reason=f"{type(exc).__name__}: {exc}; "
                                    "steps run as fresh processes")
        self.preloaded = True
        return schedule.Outcome("ok", self.clock() - start)

    def _process(self, step: Step, limit: float, log_path: Path, fork: bool) -> schedule.Outcome:
        """Run ``step.argv`` from the repository root, output to ``log_path``, stopped (with its children) at
        ``limit`` seconds: a forked child when ``fork`` allows it, else a fresh process."""
        start = self.clock()
        with open(log_path, "a") as log:
            log.write(f"$ {shlex.join(step.argv)}\n")
        if fork and forked.can_fork(step.argv) and not forked.cuda_initialised():
            pid = forked.start(step.argv, log_path, self.paths.repo, self.env, self.scale.threads)
        else:
            with open(log_path, "a") as log:
                pid = subprocess.Popen(step.argv, cwd=self.paths.repo, env=self.env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True).pid
        rc = forked.wait(pid, max(limit, 0.1))
        if rc is None:
            forked.stop(pid)
            return schedule.Outcome("timeout", self.clock() - start, reason=f"stopped at its limit of {limit:.0f} s")
        wall = self.clock() - start
        if rc != 0:
            print(f"---- last lines of {log_path.name} ----\n{_tail(log_path, 15)}", flush=True)
            return schedule.Outcome("failed", wall, reason=f"exit code {rc} (log {log_path.name})", rc=rc)
        return schedule.Outcome("ok", wall, rc=0)

    # ---- what a step leaves behind ---------------------------------------------------------------
    def _collect(self, step: Step) -> str:
        """Read back what an ok step produced into the report; returns a note (empty when nothing to say)."""
        try:
            if step.collect == "device":
                self.report["device"] = json.loads((self.paths.work / "device.json").read_text())
                return str(self.report["device"].get("device", ""))
            elif step.collect == "train":
                self.report["training"][step.info["network"]] = training_speed(step)
            elif step.collect == "weights":
                return self._return_weights(step)
        except (OSError, ValueError, KeyError) as exc:
            return f"could not read its results: {type(exc).__name__}: {exc}"
        return ""

    def _return_weights(self, step: Step) -> str:
        """Split the exported fp16 file into the output folder when the return limits allow it."""
        net = step.info["network"]
        manifest = json.loads((self.paths.work / "weights" / f"{net}.json").read_text())
        source = self.paths.work / "weights" / manifest["file"]
        names = part_names(source.name, manifest["bytes"], self.scale.part_bytes)
        sizes = [min(self.scale.part_bytes, manifest["bytes"] - i * self.scale.part_bytes) for i in range(len(names))]
        missing_reports = sum(not (self.out / n).exists() for n in REPORT_FILES)
        refused = out_budget(self.out, sizes, reserve_files=missing_reports, reserve_bytes=REPORT_RESERVE_BYTES,
                             limits=self.limits)
        manifest.update(network=net, width=step.info["width"], parts=[] if refused else names,
                        join=f"python scripts/join_weights.py DIR --network {net}")
        if refused:
            manifest["not_returned"] = refused
        else:
            split_file(source, self.out, self.scale.part_bytes)
        self.report["weights"][net] = manifest
        return f"weights not returned: {refused}" if refused else f"{len(names)} part(s) returned"

    def _record(self, step: Step, got: schedule.Outcome, at: float, predicted: float) -> None:
        self.report["steps"].append({
            "name": step.name, "phase": step.phase, "status": got.status, "started_s": round(at, 1),
            "wall_s": round(got.wall_s, 1), "estimate_s": round(step.estimate_s, 1), "predicted_s": round(predicted, 1),
            "reason": got.reason, "rc": got.rc, "command": shlex.join(step.argv)})
        phases: dict[str, float] = {}
        for s in self.report["steps"]:
            phases[str(s["phase"])] = round(phases.get(str(s["phase"]), 0.0) + s["wall_s"], 1)
        self.report["phase_wall_s"] = phases
        self.report["speed_factor"] = round(schedule.speed_factor(self.outcomes), 3)

    # ---- the output folder -----------------------------------------------------------------------
    def write_outputs(self) -> None:
        """Rewrite the report files in the output folder (each replaced whole, never half-written)."""
        _replace(self.out / "report.json", (json.dumps(self.report, indent=1) + "\n").encode())
        for name in ("runs.csv", "speed.csv"):
            if (self.paths.work / name).is_file():
                _replace(self.out / name, (self.paths.work / name).read_bytes())
        _replace(self.out / "logs.tar.gz", logs_archive(self.paths.work))


def training_speed(step: Step) -> dict:
    """Wall time of a finished training (its config record to done.json) and the images per second it reached."""
    ckpt = Path(step.info["ckpt_dir"])
    done = ckpt / "done.json"
    fit_s = done.stat().st_mtime - (ckpt / "training_config.yaml").stat().st_mtime
    epochs = int(json.loads(done.read_text())["epochs"]) or step.info["epochs"]
    return {"epochs": epochs, "batch_size": step.info["batch_size"], "fit_s": round(fit_s, 1),
            "s_per_epoch": round(fit_s / epochs, 2), "min_per_epoch": round(fit_s / epochs / 60, 3),
            "train_img_per_s": round(epochs * step.info["images_per_epoch"] / fit_s, 1),
            "note": "fit wall time including the per-epoch PGD validation and the first epoch's autotuning"}


def logs_archive(work: Path) -> bytes:
    """A gzipped tar of the step logs and the small text files of the runs and trainings (each cut to its end)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for sub in ("logs", "outputs", "ckpt", "device.json"):
            root = work / sub
            files = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
            for path in files:
                if path.is_file() and path.suffix in SMALL_SUFFIXES:
                    data = path.read_bytes()[-LOG_CAP_BYTES:]
                    info = tarfile.TarInfo(str(path.relative_to(work)))
                    info.size, info.mtime = len(data), int(path.stat().st_mtime)
                    tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _tail(path: Path, lines: int) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
