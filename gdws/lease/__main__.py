"""Command line of the GPU lease (``bash experiments/gpu_lease.sh`` runs it).

    python -m gdws.lease [--out DIR] [--deadline 540] [--work DIR] [--data DIR] [--plan-only]
    GDWS_LEASE_SCALE=smoke python -m gdws.lease --out DIR      # the dry run: every step shrunk, on CPU

Results go to ``--out`` (default: ``$OUT``, the device tool's output folder), which must be empty or absent.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from gdws.lease.plan import SCALES, Paths, build_plan, describe
from gdws.lease.runner import Lease

REPO = Path(__file__).resolve().parents[2]


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
        kit = next((k for k in (REPO / "lease" / "data_kit", REPO.parent / "shared" / "data" / "cifar10")
                    if (k / "build.py").is_file()), REPO / "lease" / "data_kit")
    return Paths(repo=REPO, work=work, data=args.data or work / "data", kit=kit,
                 wheels=args.wheels or REPO / "lease" / "wheels")


def main(argv: list[str] | None = None) -> int:
    """Parse, check the inputs (one clear error before anything runs), print the plan, run it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="output folder (default: $OUT)")
    parser.add_argument("--deadline", type=float, default=540.0, help="seconds of wall time for all steps")
    parser.add_argument("--scale", choices=sorted(SCALES), default=os.environ.get("GDWS_LEASE_SCALE", "full"))
    parser.add_argument("--work", type=Path, help="data, checkpoints and logs (default: a new temporary folder)")
    parser.add_argument("--data", type=Path, help="a folder holding cifar-10-batches-py, or where to build it")
    parser.add_argument("--kit", type=Path, help="the CIFAR-10 rebuild kit (default: lease/data_kit)")
    parser.add_argument("--wheels", type=Path, help="the carried wheels (default: lease/wheels)")
    parser.add_argument("--no-fork", action="store_true",
                        help="run every step as a fresh process (default: Python steps are forked from the runner)")
    parser.add_argument("--plan-only", action="store_true", help="print the plan and its estimates, run nothing")
    args = parser.parse_args(argv)
    if args.deadline <= 0:
        parser.error(f"--deadline must be positive, got {args.deadline}")
    if args.out is None and not args.plan_only:
        parser.error("no output folder: pass --out DIR (on the GPU machine $OUT is used)")
    if args.out is not None and args.out.exists() and any(args.out.iterdir()) and not args.plan_only:
        parser.error(f"--out {args.out} is not empty: the lease writes only into an empty folder")
    scale = SCALES[args.scale]
    work = args.work or Path(tempfile.mkdtemp(prefix="gdws-lease-"))
    paths = _paths(args, work)
    steps = build_plan(scale, paths, python=sys.executable)
    text = describe(steps, scale, args.deadline)
    print(text, flush=True)
    if args.plan_only:  # printing the plan needs no data: only a real run is refused without it
        return 0
    data = next(s for s in steps if s.name == "data")
    if not data.not_needed and not (paths.kit / "build.py").is_file():
        parser.error(f"no CIFAR-10 in {paths.data} and no rebuild kit at {paths.kit} (run scripts/prepare_lease.py, "
                     "or pass --data DIR / --kit DIR)")
    print(f"work folder {work}, results to {args.out}", flush=True)
    # experiments/gpu_lease.sh notes when the command started: imports and planning count against the deadline
    before = max(0.0, time.time() - float(os.environ.get("GDWS_LEASE_T0") or time.time()))
    lease = Lease(steps, scale, paths, args.out, args.deadline, env=child_env(paths, scale.threads), plan_text=text,
                  fork=not args.no_fork, elapsed_before_s=before)
    return lease.run()


if __name__ == "__main__":
    sys.exit(main())
