#!/usr/bin/env python
"""Data-aware GDWS on the third-party CIFAR ResNet-20: clean accuracy against the MAC ratio, no retraining (CPU).

Curves (network MAC budget, convert(macs_ratio=r)): the paper-style weight-only budget with alpha = 1 and with
PGD alphas, then the data-aware steps one by one on a calibration set of clean TRAINING images (augmentation
off, seed 1, disjoint from the 1,017 exact test images accuracy is measured on): whitened scores and kernels
alone, the pointwise refit alone (weight-only allocation), both, both with the K-FAC Fisher output weighting
(fisher=True), that with two rounds of alternating depthwise / pointwise refits (refit_rounds=2), and the Fisher
curve again with 256 and 4,096 calibration images. A_nat on the 1,017 exact test images; a weak PGD-5 (eps 1/255) at a few ratios; conversion seconds.
Writes results.csv, results.md and accuracy_vs_macs.png under --out.

Example: python scripts/study_calibration.py            (about 40 min on one quiet core; --quick: a smoke run)
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import matplotlib
import pandas as pd
import torch

import gdws
from gdws.eval import evaluate
from gdws.metrics import count_macs
from gdws.pipeline.calibration import draw_calibration
from gdws.tables.render import markdown

from bench_common import real_resnet20  # scripts/ is on the path when run as a script

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)

PGD8 = dict(eps=8 / 255, step_size=2 / 255, steps=10)  # the alphas' inner attack (gdws.alpha_attack)
# (label, calibration images or 0, convert keywords): each data-aware step alone, then together
CURVES = [("budget, alpha = 1", 0, {}),
          ("budget, PGD alphas", 0, {"alphas": "pgd"}),
          ("whitened", 1024, {"refit": False}),
          ("refit alone", 1024, {"whiten": False}),
          ("whitened + refit", 1024, {}),
          ("whitened + refit + Fisher", 1024, {"fisher": True}),
          ("whitened + refit + Fisher + 2 rounds", 1024, {"fisher": True, "refit_rounds": 2}),
          ("whitened + refit + Fisher, 256 images", 256, {"fisher": True}),
          ("whitened + refit + Fisher, 4,096 images", 4096, {"fisher": True})]


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="../shared/weights/resnet20-12fca82f.th")
    p.add_argument("--data", default=os.environ.get("GDWS_DATA", "data"), help="folder with cifar-10-batches-py")
    p.add_argument("--out", default="results/real_resnet20/calibration")
    p.add_argument("--ratios", default="1.25,1.5,2,2.5,3,4", help="network MAC budgets")
    p.add_argument("--few-ratios", default="2,3", help="ratios for the 256 / 4,096-image curves")
    p.add_argument("--weak-ratios", default="2,3", help="ratios with the weak PGD-5 check")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--curves", help="run only the curves whose label contains one of these comma-separated "
                   "strings; the other curves' rows are kept from the existing results.csv")
    p.add_argument("--quick", action="store_true", help="two ratios, small calibration sets: a smoke run")
    return p.parse_args(argv)


def _weak_pgd(model, test) -> float:
    attack = {"_target_": "gdws.eval.PGD", "eps": 1 / 255, "step_size": 0.5 / 255, "steps": 5, "random_start": True}
    return evaluate(model, test, attack, progress=False)["A_rob"]


def _plot(df: pd.DataFrame, out: Path) -> None:
    """accuracy_vs_macs.png: clean accuracy against the MAC ratio, one curve per allocation; the right panel
    zooms on the data-aware curves near dense accuracy."""
    fig, axes = plt.subplots(1, 2, figsize=(15, 6))
    dense = df[df["curve"] == "dense"].iloc[0]
    for ax, ylim in zip(axes, [(0, 100), (dense["A_nat"] - 10, dense["A_nat"] + 2)]):
        for label, part in df[df["curve"] != "dense"].groupby("curve", sort=False):
            part = part.sort_values("mac_ratio")
            style = "--" if label.startswith("budget") else "-"
            ax.plot(part["mac_ratio"], part["A_nat"], "o" + style, label=label)
        ax.axhline(dense["A_nat"], color="k", ls=":", label=f"dense {dense['A_nat']:.2f} %")
        ax.axhline(dense["A_nat"] - 1, color="grey", ls="--", lw=0.8, label="dense - 1 pt")
        ax.set(xlabel="MAC ratio (dense MACs / GDWS MACs)", ylabel="clean accuracy, 1,017 exact test images (%)",
               ylim=ylim)
        ax.grid(alpha=0.3)
    axes[0].set_title("ResNet-20 (third-party weights), no retraining: weight-only vs data-aware GDWS")
    axes[1].set_title("zoom: within 10 points of dense")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_macs.png", dpi=100)


def _table(rows: list[dict], kept: pd.DataFrame) -> pd.DataFrame:
    """This run's rows, then the kept rows of other curves, in the order of CURVES."""
    df = pd.concat([pd.DataFrame(rows), kept], ignore_index=True)
    order = {label: i for i, label in enumerate(["dense"] + [c[0] for c in CURVES])}
    return df.sort_values("curve", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    """Run every curve and write the table and the plot."""
    args = _args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    dense, dm, test = real_resnet20(args.checkpoint, args.data)
    ratios = [float(r) for r in args.ratios.split(",")]
    few = {float(r) for r in args.few_ratios.split(",")}
    weak = {float(r) for r in args.weak_ratios.split(",")}
    curves, kept = CURVES, pd.DataFrame()
    if args.curves:
        keys = args.curves.split(",")
        curves = [c for c in CURVES if any(k in c[0] for k in keys)]
        if not curves:
            raise SystemExit(f"--curves {args.curves!r} matches none of: {', '.join(c[0] for c in CURVES)}")
        previous = out / "results.csv"
        if previous.exists():
            old = pd.read_csv(previous)
            kept = old[~old["curve"].isin([c[0] for c in curves] + ["dense"])]
    if args.quick:
        ratios, few = ratios[2:4], set(ratios[2:4])
        curves = [(label, min(n, 64), kw) for label, n, kw in curves]
    images, labels = dm.train_images(1000, seed=0, augment=True)
    pgd_alphas = gdws.compute_alphas(dense, images, labels, attack="pgd", batch_size=100, **PGD8)
    dense_macs = count_macs(dense)
    rows = [{"curve": "dense", "calibration": 0, "mac_ratio": 1.0, "layers": 0,
             "A_nat": evaluate(dense, test, {"_target_": "gdws.eval.NoAttack"}, progress=False)["A_nat"],
             "A_weak_pgd": _weak_pgd(dense, test), "convert_s": 0.0}]
    sets: dict[int, torch.Tensor] = {}
    for label, n, kwargs in curves:
        kwargs = dict(kwargs)
        if kwargs.get("alphas") == "pgd":
            kwargs["alphas"] = pgd_alphas
        if n:
            kwargs["calibration"] = sets.setdefault(n, draw_calibration(dm, dense, n, "clean"))
        for r in ratios if n in (0, 1024) or args.quick else sorted(few):
            t0 = time.perf_counter()
            model, report = gdws.convert(dense, macs_ratio=r, **kwargs)
            seconds = time.perf_counter() - t0
            row = {"curve": label, "calibration": n, "mac_ratio": dense_macs / count_macs(model),
                   "layers": int(report["converted"].sum()),
                   "A_nat": evaluate(model, test, {"_target_": "gdws.eval.NoAttack"}, progress=False)["A_nat"],
                   "A_weak_pgd": _weak_pgd(model, test) if r in weak and n == 1024 else None,
                   "convert_s": seconds}
            rows.append(row)
            _table(rows, kept).to_csv(out / "results.csv", index=False, float_format="%.4g")  # survives a kill
            print(f"{label:>32} r={r:<4g} MACx{row['mac_ratio']:.2f} A_nat {row['A_nat']:.2f} "
                  f"({seconds:.0f} s)", flush=True)
    df = _table(rows, kept)
    df.to_csv(out / "results.csv", index=False, float_format="%.4g")
    load = os.getloadavg()
    header = [f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`", "",
              f"torch {torch.__version__}, {args.threads} threads, load average at end {load[0]:.1f}, wall time "
              f"{time.time() - start:.0f} s. Weak PGD-5: eps 1/255, step 0.5/255, random start.", ""]
    (out / "results.md").write_text("\n".join(header) + markdown(df) + "\n")
    _plot(df, out)
    print(f"wrote {out}/results.csv, results.md, accuracy_vs_macs.png")


if __name__ == "__main__":
    main()
