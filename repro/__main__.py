"""The deadline-bounded reproduction run on one GPU (``bash experiments/reproduce_gpu.sh`` runs it).

    python -m repro --out DIR [--deadline 540] [--work DIR] [--data DIR] [--plan-only]
    GDWS_REPRO_SCALE=smoke python -m repro --out DIR      # the dry run: every step shrunk, on CPU

Results go to ``--out`` (default: ``$OUT``), which must be empty or absent. Where results travel back through a
channel with limits, ``--max-files``/``--max-file-mib``/``--max-total-mib`` bound what the folder may hold and
``--part-mib`` the size of the weight parts (defaults: 8 files of at most 16 MiB, 64 MiB together, parts of
15 MiB); weights that would not fit stay behind, and report.json says so.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

from repro.parts import Limits, MiB
from repro.plan import SCALES, Paths, build_plan, describe
from repro.runner import DeadlineRun

REPO = Path(__file__).resolve().parents[1]


def child_env(paths: Paths, threads: int | None) -> dict[str, str]:
    """Environment of every step: the carried wheels' folder and the repository first on the import path."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="1")
    entries = (str(paths.work / "site"), str(paths.repo), env.get("PYTHONPATH"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in entries if p)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _paths(args: argparse.Namespace, work: Path) -> Paths:
    kit = args.kit
    if kit is None:  # the carried copy, else the shared kit beside a development checkout
        kit = next((k for k in (REPO / "bundle" / "data_kit", REPO.parent / "shared" / "data" / "cifar10")
                    if (k / "build.py").is_file()), REPO / "bundle" / "data_kit")
    return Paths(repo=REPO, work=work, data=args.data or work / "data", kit=kit,
                 wheels=args.wheels or REPO / "bundle" / "wheels")


def main(argv: list[str] | None = None) -> int:
    """Parse, check the inputs (one clear error before anything runs), print the plan, run it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="output folder (default: $OUT)")
    parser.add_argument("--deadline", type=float, default=540.0, help="seconds of wall time for all steps")
    parser.add_argument("--scale", choices=sorted(SCALES), default=os.environ.get("GDWS_REPRO_SCALE", "full"))
    parser.add_argument("--work", type=Path, help="data, checkpoints and logs (default: a new temporary folder)")
    parser.add_argument("--data", type=Path, help="a folder holding cifar-10-batches-py, or where to build it")
    parser.add_argument("--kit", type=Path, help="the CIFAR-10 rebuild kit (default: bundle/data_kit)")
    parser.add_argument("--wheels", type=Path, help="the carried wheels (default: bundle/wheels)")
    parser.add_argument("--no-fork", action="store_true",
                        help="run every step as a fresh process (default: Python steps are forked from the runner)")
    parser.add_argument("--plan-only", action="store_true", help="print the plan and its estimates, run nothing")
    default = Limits()
    parser.add_argument("--max-files", type=int, default=default.max_files, help="files the output folder may hold")
    parser.add_argument("--max-file-mib", type=float, default=default.max_file_bytes / MiB, help="MiB per file")
    parser.add_argument("--max-total-mib", type=float, default=default.max_total_bytes / MiB, help="MiB in all")
    parser.add_argument("--part-mib", type=float, help="weight parts of at most this size (default: the scale's)")
    args = parser.parse_args(argv)
    if args.deadline <= 0:
        parser.error(f"--deadline must be positive, got {args.deadline}")
    if min(args.max_files, args.max_file_mib, args.max_total_mib, args.part_mib or 1) <= 0:
        parser.error("--max-files, --max-file-mib, --max-total-mib and --part-mib must be positive")
    if args.out is None and not args.plan_only:
        parser.error("no output folder: pass --out DIR (or set $OUT)")
    if args.out is not None and args.out.exists() and any(args.out.iterdir()) and not args.plan_only:
        parser.error(f"--out {args.out} is not empty: the run writes only into an empty folder")
    scale = SCALES[args.scale]
    if args.part_mib:
        scale = dataclasses.replace(scale, part_bytes=int(args.part_mib * MiB))
    limits = Limits(args.max_files, int(args.max_file_mib * MiB), int(args.max_total_mib * MiB))
    work = args.work or Path(tempfile.mkdtemp(prefix="gdws-repro-"))
    paths = _paths(args, work)
    steps = build_plan(scale, paths, python=sys.executable)
    text = describe(steps, scale, args.deadline, limits)
    print(text, flush=True)
    if args.plan_only:  # printing the plan needs no data: only a real run is refused without it
        return 0
    data = next(s for s in steps if s.name == "data")
    if not data.not_needed and not (paths.kit / "build.py").is_file():
        parser.error(f"no CIFAR-10 in {paths.data} and no rebuild kit at {paths.kit} (run scripts/bundle_offline.py, "
                     "or pass --data DIR / --kit DIR)")
    print(f"work folder {work}, results to {args.out}", flush=True)
    # experiments/reproduce_gpu.sh notes when the command started: imports and planning count against the deadline
    before = max(0.0, time.time() - float(os.environ.get("GDWS_REPRO_T0") or time.time()))
    job = DeadlineRun(steps, scale, paths, args.out, args.deadline, env=child_env(paths, scale.threads),
                      plan_text=text, fork=not args.no_fork, elapsed_before_s=before, limits=limits)
    return job.run()


if __name__ == "__main__":
    sys.exit(main())
