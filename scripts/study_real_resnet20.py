#!/usr/bin/env python
"""GDWS on really trained weights: the third-party CIFAR ResNet-20 on the 1,017 exact CIFAR-10 test images (CPU).

Curves of clean accuracy against the network MAC ratio: LEGO over a range of beta (alpha = 1), and the network
MAC budget (convert(macs_ratio=r)) unweighted, with clean alphas and with PGD alphas (eq. 8 on 1,000 augmented
training images, PGD-10 eps 8/255). Beside each point: the CPU FPS ratio of gdws.optimize_for_inference(GDWS)
over the BN-folded dense model at batch 1, the two timed in this process in alternating order, ``--rounds``
times (median and min..max of the per-round ratios); a weak-eps PGD accuracy on the PGD-alpha budget curve
(PGD-5; this net is not adversarially trained: at eps 8/255 it is ~0); the g histogram of a few layers.
Writes results.csv, results.md, accuracy_vs_macs.png and g_hist.png under --out.

Example: python scripts/study_real_resnet20.py   (about 40 min on 2 shared cores; --quick for a smoke run)
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import matplotlib
import pandas as pd
import torch

import gdws
from gdws.eval import evaluate
from gdws.metrics import count_macs, device_name, measure_fps
from gdws.tables.render import markdown

from bench_common import real_resnet20  # scripts/ is on the path when run as a script

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)

HIST_LAYERS = ("layer1.0.conv2", "layer2.2.conv2", "layer3.1.conv1")  # one per stage: 16, 32, 64 channels
PGD8 = dict(eps=8 / 255, step_size=2 / 255, steps=10)  # the alphas' inner attack (gdws.alpha_attack)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="../shared/weights/resnet20-12fca82f.th")
    p.add_argument("--data", default=os.environ.get("GDWS_DATA", "data"), help="folder with cifar-10-batches-py")
    p.add_argument("--out", default="results/real_resnet20")
    p.add_argument("--betas", default="1,2,4,8,16,30", help="LEGO betas (unweighted squared error)")
    p.add_argument("--ratios", default="1.1,1.25,1.5,2,3", help="network MAC budgets")
    p.add_argument("--alpha-samples", type=int, default=1000)
    p.add_argument("--weak-eps", type=float, default=1 / 255, help="eps of the weak PGD-5 check")
    p.add_argument("--rounds", type=int, default=5, help="alternating dense/GDWS FPS measurements per point")
    p.add_argument("--fps-time", type=float, default=0.2, help="seconds per FPS measurement")
    p.add_argument("--select-time", type=float, default=0.03, help="optimize_for_inference seconds per form")
    p.add_argument("--quick", action="store_true", help="3 points per curve, 200 alpha images, short timings")
    return p.parse_args(argv)


def _pgd(eps: float, step_size: float, steps: int) -> dict:
    return {"_target_": "gdws.eval.PGD", "eps": eps, "step_size": step_size, "steps": steps, "random_start": True}


def _speed(dense_fast: torch.nn.Module, model: torch.nn.Module, rounds: int, seconds: float, select: float) -> dict:
    """Batch-1 FPS of optimize_for_inference(model) vs ``dense_fast``, alternating which one runs first."""
    x = torch.rand(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "dense form kept" notices are expected on small layers
        fast, table = gdws.optimize_for_inference(model, x, min_run_time=select, report=True)
    fd, fg, ratios = [], [], []
    for r in range(rounds):
        order = [(dense_fast, fd), (fast, fg)] if r % 2 == 0 else [(fast, fg), (dense_fast, fd)]
        for net, into in order:
            into.append(measure_fps(net, batch_size=1, warmup=2, min_run_time=seconds)["fps"])
        ratios.append(fg[-1] / fd[-1])
    forms = Counter(table["chosen"]) if len(table) else Counter()
    return {"fps_dense": statistics.median(fd), "fps_gdws": statistics.median(fg),
            "fps_ratio": statistics.median(ratios), "fps_ratio_min": min(ratios), "fps_ratio_max": max(ratios),
            "forms": " ".join(f"{k}:{v}" for k, v in sorted(forms.items()))}


def _point(label: str, setting: str, model, report, dense_macs, test, dense_fast, args, robust: bool) -> dict:
    """One row: accuracy, MAC ratio, layers converted, speed, g histograms of HIST_LAYERS."""
    macs = count_macs(model)
    row = {"allocation": label, "setting": setting, "mac_ratio": dense_macs / macs, "macs": macs,
           "converted": int(report["converted"].sum()) if report is not None else 0,
           "A_nat": evaluate(model, test, {"_target_": "gdws.eval.NoAttack"}, progress=False)["A_nat"]}
    if robust:
        row["A_weak_pgd"] = evaluate(model, test, _pgd(args.weak_eps, args.weak_eps / 2, 5), progress=False)["A_rob"]
    row.update(_speed(dense_fast, model, args.rounds, args.fps_time, args.select_time))
    for name in HIST_LAYERS:
        hit = report[report["name"] == name] if report is not None else []
        row[f"g {name}"] = hit["g_hist"].iloc[0] if len(hit) and hit["converted"].iloc[0] else "dense"
    print(f"{label:>16} {setting:>16}  MACx{row['mac_ratio']:.2f}  A_nat {row['A_nat']:.2f}  "
          f"FPSx{row['fps_ratio']:.2f} [{row['fps_ratio_min']:.2f}, {row['fps_ratio_max']:.2f}]", flush=True)
    return row


def _plot(df: pd.DataFrame, out: Path) -> None:
    """accuracy_vs_macs.png: clean accuracy, weak-PGD accuracy and FPS ratio against the MAC ratio."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    dense = df[df["allocation"] == "dense"].iloc[0]
    for label, part in df[df["allocation"] != "dense"].groupby("allocation", sort=False):
        part = part.sort_values("mac_ratio")
        line, = axes[0].plot(part["mac_ratio"], part["A_nat"], "o-", label=label)
        if part["A_weak_pgd"].notna().any():
            axes[1].plot(part["mac_ratio"], part["A_weak_pgd"], "o-", color=line.get_color(), label=label)
        err = [part["fps_ratio"] - part["fps_ratio_min"], part["fps_ratio_max"] - part["fps_ratio"]]
        axes[2].errorbar(part["mac_ratio"], part["fps_ratio"], yerr=err, fmt="o-", capsize=3,
                         color=line.get_color(), label=label)
    axes[0].axhline(dense["A_nat"], color="k", ls=":", label=f"dense {dense['A_nat']:.2f} %")
    axes[0].axhline(dense["A_nat"] - 1, color="grey", ls="--", lw=0.8, label="dense - 1 pt")
    axes[1].axhline(dense["A_weak_pgd"], color="k", ls=":", label=f"dense {dense['A_weak_pgd']:.2f} %")
    top = df["mac_ratio"].max() * 1.05
    axes[2].plot([1, top], [1, top], color="grey", ls="--", lw=0.8, label="FPS ratio = MAC ratio")
    axes[2].axhline(1, color="k", ls=":", lw=0.8)
    titles = ("clean accuracy, 1,017 exact test images (%)", "PGD-5 accuracy at weak eps (%)",
              "CPU FPS ratio, batch 1 (optimised GDWS / BN-folded dense)")
    for ax, title in zip(axes, titles):
        ax.set(xlabel="MAC ratio (dense MACs / GDWS MACs)", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("GDWS on the third-party CIFAR ResNet-20 (akamaster), no retraining")
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_macs.png", dpi=110)


def _plot_g(reports: dict[str, pd.DataFrame], out: Path) -> None:
    """g_hist.png: how many input channels keep g = 0..9 depthwise kernels, per layer and allocation."""
    fig, axes = plt.subplots(1, len(HIST_LAYERS), figsize=(15, 4))
    width = 0.8 / len(reports)
    for i, (label, report) in enumerate(reports.items()):
        for ax, name in zip(axes, HIST_LAYERS):
            hit = report[report["name"] == name].iloc[0]
            counts = dict(pair.split(":") for pair in hit["g_hist"].split()) if hit["converted"] else {}
            ks = range(10)
            ax.bar([k + i * width for k in ks], [int(counts.get(str(k), 0)) for k in ks], width, label=label)
            ax.set(title=f"{name} (C={hit['C']}, M={hit['M']})", xlabel="g_c (kernels kept for channel c)",
                   ylabel="input channels")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "g_hist.png", dpi=110)


def main(argv: list[str] | None = None) -> None:
    """Run the study and write its table and plots."""
    args = _args(argv)
    torch.set_num_threads(1)  # one core of two shared ones: less contention noise than two spinning threads
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    dense, dm, test = real_resnet20(args.checkpoint, args.data)
    betas = [float(b) for b in args.betas.split(",")]
    ratios = [float(r) for r in args.ratios.split(",")]
    n_alpha = args.alpha_samples
    if args.quick:
        betas, ratios, n_alpha, args.rounds, args.fps_time = betas[::4], ratios[::3], 200, 3, 0.1
    images, labels = dm.train_images(n_alpha, seed=0, augment=True)
    alphas = {"none": None, "clean": gdws.compute_alphas(dense, images, labels, attack=None, batch_size=100),
              "pgd": gdws.compute_alphas(dense, images, labels, attack="pgd", batch_size=100, **PGD8)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no GDWS layers: only BN folding" is the point of the baseline
        dense_fast = gdws.optimize_for_inference(dense, torch.rand(1, 3, 32, 32))
    dense_macs = count_macs(dense)
    rows = [_point("dense", "-", dense, None, dense_macs, test, dense_fast, args, robust=True)]
    rows[0]["A_pgd_eps8"] = evaluate(dense, test, _pgd(8 / 255, 2 / 255, 5), progress=False)["A_rob"]
    reports = {}
    for beta in betas:
        model, report = gdws.convert(dense, beta=beta)
        rows.append(_point("LEGO beta", f"beta={beta:g}", model, report, dense_macs, test, dense_fast, args, False))
    for mode, alpha in alphas.items():
        label = f"budget alphas={mode}"
        for r in ratios:
            model, report = gdws.convert(dense, macs_ratio=r, alphas=alpha)
            rows.append(_point(label, f"macs_ratio={r:g}", model, report, dense_macs, test, dense_fast, args,
                               robust=mode == "pgd"))
            if r == 2.0 or (args.quick and r == ratios[-1]):
                reports[label] = report
    df = pd.DataFrame(rows)
    df.to_csv(out / "results.csv", index=False, float_format="%.4g")
    cols = ["allocation", "setting", "mac_ratio", "converted", "A_nat", "A_weak_pgd", "fps_ratio",
            "fps_ratio_min", "fps_ratio_max", "fps_dense", "fps_gdws", "forms"]
    load = os.getloadavg()
    header = [f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`", "",
              f"torch {torch.__version__}, 1 thread on {device_name('cpu')}, load average at end {load[0]:.1f} "
              f"(2 cores, shared), wall time {time.time() - start:.0f} s. Dense PGD-5 eps 8/255 accuracy: "
              f"{rows[0]['A_pgd_eps8']:.2f} %; weak eps = {255 * args.weak_eps:g}/255.", ""]
    g_cols = ["allocation", "setting", *[f"g {n}" for n in HIST_LAYERS]]
    (out / "results.md").write_text("\n".join(header) + markdown(df[cols]) + "\n" + markdown(df[g_cols]))
    _plot(df, out)
    _plot_g(reports, out)
    print(f"wrote {out}/results.csv, results.md, accuracy_vs_macs.png, g_hist.png")


if __name__ == "__main__":
    main()
