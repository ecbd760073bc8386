#!/usr/bin/env python
"""One repeat of the selection-stability check: VGG-16, every layer at 1/2.8 of its MACs, batch 1.

Runs optimize_for_inference on the converted model and times the result against the dense model in paired
rounds; prints one markdown row (forms chosen, model-level variant, speed-up and its range). Only the public
API is used, so the same script measures an older checkout too (PYTHONPATH=OLD_CHECKOUT python scripts/...):
alternate old and new runs in a shell loop so that both see the same load.

Example: for i in 1 2 3 4 5; do PYTHONPATH=/tmp/old python scripts/bench_stability.py --label before;
         python scripts/bench_stability.py --label after; done
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from collections import Counter

import torch
from bench_common import convert_every_layer, paired_speedups
from gdws.fast import optimize_for_inference
from gdws.models import create_model


def main(argv: list[str] | None = None) -> None:
    """Print one row: label, load, forms chosen, model-level choice, opt/dense speed-up (range), selection time."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--select-time", type=float, default=0.05, help="as scripts/bench_fps.py")
    p.add_argument("--fps-time", type=float, default=0.5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dense = create_model("vgg16").eval()
    converted, _ = convert_every_layer(dense, 2.8)
    x = torch.rand(1, 3, 32, 32)
    t0 = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt, table = optimize_for_inference(converted, x, min_run_time=args.select_time, report=True)
    t_sel = time.time() - t0
    fallback = [str(w.message) for w in caught if "model-level" in str(w.message)]
    speed = paired_speedups({"dense": dense, "opt": opt}, x, args.fps_time)["opt"]
    forms = ", ".join(f"{k}:{v}" for k, v in sorted(Counter(table["chosen"]).items()))
    print(f"| {args.label} | {os.getloadavg()[0]:.1f} | {forms} | {'fallback: ' + fallback[0] if fallback else '-'} | "
          f"{speed['speedup']:.2f} ({speed['lo']:.2f}-{speed['hi']:.2f}) | {t_sel:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
