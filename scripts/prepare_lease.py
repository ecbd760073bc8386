"""Prepare the GPU lease here, before a GPU is asked for, and print the one call to make.

    python scripts/prepare_lease.py            # wheels into lease/wheels, the data kit into lease/data_kit

1. finds what run.py, the step programs and the CUDA tests import that the device image lacks, and downloads
   their wheels pinned to the versions installed here (sdist-only ones are built here as pure wheels);
2. copies the CIFAR-10 rebuild kit (../shared/data/cifar10) into lease/data_kit;
3. checks that the working tree that travels plus both folders stays under 64 MiB;
4. prints the lease's plan (time per step and phase) and the device call: command, carry list, timeout.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gdws.lease.plan import SCALES, Paths, build_plan, describe  # noqa: E402
from gdws.lease.prepare import (ALWAYS, TRAVEL_LIMIT, MiB, copy_kit, download, imported_distributions,  # noqa: E402
                                missing_pins, travel_size)


def main() -> int:
    """Download, copy, check, print; exit 1 (saying why) when the call would not fit or cannot be prepared."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", default="lease/wheels", help="ignored folder for the wheels (relative to the repo)")
    parser.add_argument("--kit", default="lease/data_kit", help="ignored folder for the data kit (relative to repo)")
    parser.add_argument("--kit-src", type=Path, default=REPO.parent / "shared" / "data" / "cifar10")
    parser.add_argument("--deadline", type=float, default=540.0, help="the lease's wall-time deadline (seconds)")
    parser.add_argument("--timeout", type=int, default=600, help="the device call's timeout_s (at most 600)")
    args = parser.parse_args()
    if not 0 < args.deadline < args.timeout <= 600:
        parser.error("need 0 < --deadline < --timeout <= 600 (the device runs one command for at most 600 s)")
    carry = [args.wheels, args.kit]
    for path in carry:
        if subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode != 0:
            parser.error(f"{path} is not ignored by git: a carried folder must be (add it to .gitignore)")

    pins = missing_pins(imported_distributions() | set(ALWAYS))
    print("packages the device image lacks (pinned to this machine's versions):",
          ", ".join(f"{k}=={v}" for k, v in sorted(pins.items())))
    wheels = download(pins, REPO / args.wheels)
    print(f"wheels in {args.wheels}: " + ", ".join(f"{w.name} ({w.stat().st_size / 1024:.0f} KiB)" for w in wheels))
    kit = copy_kit(args.kit_src, REPO / args.kit)
    print(f"data kit in {args.kit}: {kit / MiB:.1f} MiB (from {args.kit_src})")

    sizes = travel_size(REPO, carry)
    total = sum(sizes.values())
    print("what travels: " + ", ".join(f"{k} {v / MiB:.1f} MiB" for k, v in sizes.items())
          + f"; total {total / MiB:.1f} MiB of {TRAVEL_LIMIT // MiB} MiB")
    if total > TRAVEL_LIMIT:
        print("too large for the device call: ignore or remove untracked files, or carry less", file=sys.stderr)
        return 1

    work = Path("/tmp/gdws-lease-XXXX")  # the lease makes its own temporary folder on the device
    paths = Paths(repo=REPO, work=work, data=work / "data", kit=REPO / args.kit, wheels=REPO / args.wheels)
    print("\n" + describe(build_plan(SCALES["full"], paths), SCALES["full"], args.deadline) + "\n")
    print("The one GPU call (device tool `run`; leave `kind` out: nvidia-h100-x1):")
    print(f"  command:   bash experiments/gpu_lease.sh --deadline {args.deadline:.0f}")
    print(f"  carry:     {json.dumps(carry)}")
    print(f"  timeout_s: {args.timeout}")
    print("Then: results/gpu/ from the returned files (lease.json, runs.csv, speed.csv, logs.tar.gz), and the weights "
          "with python scripts/join_weights.py DIR.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
