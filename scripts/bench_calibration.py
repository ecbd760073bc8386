#!/usr/bin/env python
"""Time and peak memory of data-aware GDWS (calibration statistics, Fisher factors, refit) on full-width networks.

Per model (each in a fresh subprocess, so its peak resident memory is its own): the calibrated conversion
convert(macs_ratio=R, calibration=N images) run two ways: whitening statistics only (refit=False), and the whole
data-aware conversion (statistics, Fisher factors, refit: fisher=True); the difference is the Fisher pass and the
refit. With --rounds N, a third way: that with N rounds of the alternating depthwise / pointwise refit. The
weights are random (timing and memory do not depend on training; G at a MAC ratio does slightly); the images
are random in [0, 1].
Peak memory: the subprocess's maximum resident set size (model, images and everything the conversion holds).

    python scripts/bench_calibration.py                          # vgg16 and preact_resnet18, 1,024 images, 2x
    python scripts/bench_calibration.py --models vgg16 --samples 256 --threads 1 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def measure(model_name: str, samples: int, ratio: float, threads: int, rounds: int = 0) -> dict:
    """Run inside the subprocess: time each conversion variant of one model, report peak RSS in MiB."""
    import torch

    import gdws
    from gdws.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(model_name).eval()
    images = torch.rand(samples, 3, 32, 32)
    times = {}
    variants = [("statistics", {"refit": False}), ("statistics + Fisher + refit", {"fisher": True})]
    if rounds:
        variants.append((f"... + {rounds} alternating rounds", {"fisher": True, "refit_rounds": rounds}))
    for label, kwargs in variants:
        start = time.perf_counter()
        _, report = gdws.convert(model, macs_ratio=ratio, calibration=images, **kwargs)
        times[label] = round(time.perf_counter() - start, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"model": model_name, "samples": samples, "macs_ratio": ratio, "threads": threads, "rounds": rounds,
            "layers": int(report["converted"].sum()), **{f"{k} s": v for k, v in times.items()},
            "peak_rss_MiB": round(peak)}


def main() -> None:
    """Parse the options; run one subprocess per model (or, with --inner, the measurement itself)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vgg16,preact_resnet18")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--ratio", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=0, help="also time refit_rounds=N (alternating refit)")
    p.add_argument("--inner", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        print(json.dumps(measure(args.inner, args.samples, args.ratio, args.threads, args.rounds)))
        return
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--inner", name, "--samples", str(args.samples), "--ratio", str(args.ratio),
               "--threads", str(args.threads), "--rounds", str(args.rounds)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        print(json.dumps(json.loads(out)), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
