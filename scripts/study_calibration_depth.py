#!/usr/bin/env python
"""Data-aware GDWS at 2, 3 and 4x fewer MACs: which calibration settings close the gap to dense (CPU study).

For a trained CIFAR-10 network (default: the third-party ResNet-20 of ../shared/weights), each variant is a set of
gdws.core.settings.CalibrationSettings fields given to gdws.convert(dense, macs_ratio=r, calibration=images, ...)
on 1,024 clean TRAINING images (augmentation off, seed 1, the pipeline's draw_calibration). Clean accuracy on the
whole CIFAR-10 test set (10,000 images) and on its 1,017 exact images (see the data README: the test set here is
rebuilt offline, 1,017 images pixel-exact, the others decoded from JPEG), with the project's evaluator.
Writes results.csv (one row per variant and ratio, rewritten after each row) under --out.

    python scripts/study_calibration_depth.py --variants defaults,rounds4 --ratios 2,3,4
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch

import gdws
from gdws.data import CIFAR10DataModule
from gdws.eval import evaluate
from gdws.metrics import count_macs
from gdws.models import create_model, load_checkpoint
from gdws.pipeline.calibration import draw_calibration

#: variant name -> CalibrationSettings fields (on top of the defaults)
VARIANTS = {
    "defaults": {},
    "rounds2": {"refit_rounds": 2},
    "rounds4": {"refit_rounds": 4},
    "residual": {"residual_target": True},
    "residual+rounds2": {"residual_target": True, "refit_rounds": 2},
    "residual+rounds4": {"residual_target": True, "refit_rounds": 4},
    "bn": {"bn_recalibration": True},
    "no-fisher": {"fisher": False},
}


def _test_sets(data: str) -> dict[str, list]:
    """{'10k': all 10,000 test batches, '1017 exact': the exact images}: the project's DataModule, one batch each."""
    sets = {}
    for label, exact in (("10k", False), ("1017 exact", True)):
        dm = CIFAR10DataModule(root=data, exact_only=exact, eval_batch_size=1000)
        dm.prepare_data()
        dm.setup("test")
        sets[label] = list(dm.test_dataloader())
    return sets


def _accuracy(model: torch.nn.Module, sets: dict[str, list]) -> dict[str, float]:
    return {f"A_nat {k}": evaluate(model, v, {"_target_": "gdws.eval.NoAttack"}, progress=False)["A_nat"]
            for k, v in sets.items()}


def main() -> None:
    """Run every variant at every ratio, writing results.csv as it goes."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--checkpoint", default="../shared/weights/resnet20-12fca82f.th")
    p.add_argument("--normalize", default="imagenet", help="the input statistics the weights were trained with")
    p.add_argument("--data", default=os.environ.get("GDWS_DATA", "data"), help="folder with cifar-10-batches-py")
    p.add_argument("--variants", default="defaults", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--ratios", default="2,3,4")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="results/calibration_depth")
    args = p.parse_args()
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "results.csv"
    old = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    dense = load_checkpoint(create_model(args.model, normalize=args.normalize), args.checkpoint).eval()
    sets = _test_sets(args.data)
    dm = CIFAR10DataModule(root=args.data)
    dm.prepare_data()
    dm.setup("fit")
    images = draw_calibration(dm, dense, args.samples, "clean")
    rows = [{"model": args.model, "variant": "dense", "ratio": 1.0, "mac_ratio": 1.0, **_accuracy(dense, sets)}]
    dense_macs = count_macs(dense)
    for variant in args.variants.split(","):
        for ratio in [float(r) for r in args.ratios.split(",")]:
            start = time.perf_counter()
            model, _ = gdws.convert(dense, macs_ratio=ratio, calibration=images, progress=False, **VARIANTS[variant])
            seconds = time.perf_counter() - start
            rows.append({"model": args.model, "variant": variant, "ratio": ratio,
                         "mac_ratio": round(dense_macs / count_macs(model), 3), **_accuracy(model, sets),
                         "convert_s": round(seconds, 1)})
            print(rows[-1], flush=True)
            keep = old[~old.set_index(["model", "variant", "ratio"]).index.isin(
                [(r["model"], r["variant"], r["ratio"]) for r in rows])] if len(old) else old
            pd.concat([keep, pd.DataFrame(rows)], ignore_index=True).to_csv(csv, index=False)


if __name__ == "__main__":
    main()
