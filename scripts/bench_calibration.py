#!/usr/bin/env python
"""Time and peak memory of data-aware GDWS (calibration statistics, Fisher factors, refit) on full-width networks.

Per model (each in a fresh subprocess, so its peak resident memory is its own), the calibrated conversion
convert(macs_ratio=R, calibration=N images) is timed in these variants:
- "statistics": whitening statistics only (refit=False, fisher=False);
- "full": whitening + Fisher + the sequential refit (the defaults, fisher=True);
- with --rounds N: "full" plus N rounds of the alternating depthwise / pointwise refit;
- with --layer-by-layer: "full" on the layer-by-layer refit path (sequential=False), the path before issue 29.
The weights are random (timing and memory do not depend on training; G at a MAC ratio does slightly); the images
are random in [0, 1]. Peak memory: the subprocess's maximum resident set size (Python, torch, the model, the
images and everything the conversion holds). One JSON line per model.

    python scripts/bench_calibration.py --models vgg16                     # 1,024 images, 2x, 2 threads
    python scripts/bench_calibration.py --models resnet20,resnet56,resnet110 --layer-by-layer --plot depth.png
    python scripts/bench_calibration.py --models vgg16 --rounds 2 --repeat 3 --no-statistics
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from statistics import median as statistics_median


def measure(model_name: str, samples: int, ratio: float, threads: int, rounds: int, layer_by_layer: bool,
            repeat: int, statistics: bool) -> dict:
    """Run inside the subprocess: time each conversion variant of one model ``repeat`` times, the variants
    interleaved (the median and the range of each), and report the peak RSS in MiB."""
    import torch

    import gdws
    from gdws.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(model_name).eval()
    images = torch.rand(samples, 3, 32, 32)
    variants = [("statistics", {"refit": False, "fisher": False})] * statistics + [("full", {"fisher": True})]
    if rounds:
        variants.append((f"full + {rounds} rounds", {"fisher": True, "refit_rounds": rounds}))
    if layer_by_layer:
        variants.append(("full, layer by layer", {"fisher": True, "sequential": False}))
    for _, kwargs in variants:  # warm-up on 8 images: first-call costs (kernels, fx code generation) not timed
        gdws.convert(model, macs_ratio=ratio, calibration=images[:8], progress=False, **kwargs)
    times: dict[str, list[float]] = {label: [] for label, _ in variants}
    for _ in range(repeat):
        for label, kwargs in variants:
            start = time.perf_counter()
            _, report = gdws.convert(model, macs_ratio=ratio, calibration=images, progress=False, **kwargs)
            times[label].append(round(time.perf_counter() - start, 1))
            if kwargs.get("refit", True):
                assert report.attrs["calibration_sequential"] == kwargs.get("sequential", True), label
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    spread = {f"{k} range s": [min(v), max(v)] for k, v in times.items() if len(v) > 1}
    return {"model": model_name, "samples": samples, "macs_ratio": ratio, "threads": threads,
            "convs": sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()),
            "layers": int(report["converted"].sum()),
            **{f"{k} s": round(statistics_median(v), 1) for k, v in times.items()},
            **spread, "peak_rss_MiB": round(peak)}


def plot(rows: list[dict], path: str) -> None:
    """Seconds of each variant against the number of converted layers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key in [k for k in rows[0] if k.endswith(" s")]:
        pts = [(r["layers"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*pts), "o-", label=key[:-2])
    for r in rows:
        ax.annotate(r["model"], (r["layers"], r["full s"]), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("converted layers")
    ax.set_ylabel("conversion time (s)")
    ax.set_title(f"data-aware GDWS, {rows[0]['samples']} images, {rows[0]['macs_ratio']:g}x", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    """Parse the options; run one subprocess per model (or, with --inner, the measurement itself)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vgg16,preact_resnet18")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--ratio", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=0, help="also time refit_rounds=N (alternating refit)")
    p.add_argument("--layer-by-layer", action="store_true", help="also time the layer-by-layer refit path")
    p.add_argument("--repeat", type=int, default=1, help="time each variant N times, interleaved (median, range)")
    p.add_argument("--no-statistics", action="store_true", help="skip the statistics-only variant")
    p.add_argument("--plot", help="PNG of time against converted layers, one line per variant")
    p.add_argument("--inner", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        print(json.dumps(measure(args.inner, args.samples, args.ratio, args.threads, args.rounds,
                                 args.layer_by_layer, args.repeat, not args.no_statistics)))
        return
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    rows = []
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--inner", name, "--samples", str(args.samples), "--ratio", str(args.ratio),
               "--threads", str(args.threads), "--rounds", str(args.rounds), "--repeat", str(args.repeat)]
        cmd += ["--layer-by-layer"] * args.layer_by_layer + ["--no-statistics"] * args.no_statistics
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
        print(json.dumps(rows[-1]), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
