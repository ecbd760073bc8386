"""The offline bundle: what a GPU machine without internet needs for the reproduction run, prepared here.

    python scripts/bundle_offline.py            # wheels into bundle/wheels, the data kit into bundle/data_kit

1. finds what run.py, the step programs and the CUDA tests import that the target's image lacks (its package
   list: repro.bundle.IMAGE_PACKAGES), and downloads their wheels pinned to the versions installed here
   (sdist-only ones are built here as pure wheels);
2. copies the CIFAR-10 rebuild kit (--kit-src) into bundle/data_kit;
3. checks that the checkout plus both folders stays under --travel-limit-mib (default 64);
4. prints the run's plan (time per step and phase) and the command to run there.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from repro.bundle import (ALWAYS, TRAVEL_LIMIT, MiB, copy_kit, download, imported_distributions,  # noqa: E402
                          missing_pins, travel_size)
from repro.plan import SCALES, Paths, build_plan, describe  # noqa: E402


def main() -> int:
    """Download, copy, check, print; exit 1 (saying why) when the call would not fit or cannot be prepared."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", default="bundle/wheels", help="ignored folder for the wheels (relative to repo)")
    parser.add_argument("--kit", default="bundle/data_kit", help="ignored folder for the data kit (relative to repo)")
    parser.add_argument("--kit-src", type=Path, default=REPO.parent / "shared" / "data" / "cifar10")
    parser.add_argument("--deadline", type=float, default=540.0, help="the run's wall-time deadline (seconds)")
    parser.add_argument("--timeout", type=int, default=600, help="the command's time limit there (seconds)")
    parser.add_argument("--travel-limit-mib", type=float, default=TRAVEL_LIMIT / MiB,
                        help="most the checkout plus the bundle may weigh")
    args = parser.parse_args()
    if not 0 < args.deadline < args.timeout:
        parser.error("need 0 < --deadline < --timeout (the deadline leaves time to write the results)")
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
          + f"; total {total / MiB:.1f} MiB of {args.travel_limit_mib:g} MiB")
    if total > args.travel_limit_mib * MiB:
        print("too large to travel: ignore or remove untracked files, or carry less", file=sys.stderr)
        return 1

    work = Path("/tmp/gdws-repro-XXXX")  # the run makes its own temporary folder there
    paths = Paths(repo=REPO, work=work, data=work / "data", kit=REPO / args.kit, wheels=REPO / args.wheels)
    print("\n" + describe(build_plan(SCALES["full"], paths), SCALES["full"], args.deadline) + "\n")
    print("Copy the checkout with these folders to the GPU machine and run there, within a limit of "
          f"{args.timeout} s:")
    print(f"  bash experiments/reproduce_gpu.sh --deadline {args.deadline:.0f} --out DIR")
    print(f"  (the copy includes {json.dumps(carry)}, which git ignores)")
    print("Then: results/gpu/ from DIR (report.json, runs.csv, speed.csv, logs.tar.gz), and the weights with "
          "python scripts/join_weights.py DIR.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
