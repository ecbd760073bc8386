#!/usr/bin/env python
"""Ask for FPS, get FPS: convert(speedup=r) against convert(macs_ratio=...) at the same measured speed, plus ONNX Runtime.

Per model and requested r: the latency-aware allocation (gdws.convert(speedup=r)), re-optimised and timed
alternately with the dense model in one process (5 paired rounds: median and range of the per-round
speed-up, against the dense model as is and BN-folded), its MAC ratio and total weighted error; beside it the
MAC-budget allocation at macs_ratio=r and at a second ratio chosen (one secant step) to match the latency-aware
model's measured speed, with the MAC-based error interpolated at that speed. Then ONNX Runtime (CPU) beside
PyTorch eager for the dense, straightforward-GDWS and optimised models of the speedup=2 allocation, batch 1 and 32.
Weights: random init unless --checkpoint NAME=PATH (random-init spectra are flat: see results/perf/README.md).

Example: python scripts/bench_speedup.py --models vgg16 --ratios 2 --threads 1
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_common import header, paired_speedups
from gdws.conversion import convert
from gdws.fast import fold_batchnorm, optimize_for_inference
from gdws.fast.onnx_export import export_onnx, ort_fps
from gdws.models import create_model, load_checkpoint


def _opt(model: torch.nn.Module, x: torch.Tensor, select_time: float) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optimize_for_inference(model, x, min_run_time=select_time)


def _measure(dense, folded, converted, x, select_time, fps_time) -> dict:
    """Speed-up of the freshly optimised ``converted`` over dense (and BN-folded dense), paired rounds."""
    t = paired_speedups({"dense": dense, "fold": folded, "opt": _opt(converted, x, select_time)}, x, fps_time)
    return {"speedup": t["opt"]["speedup"], "lo": t["opt"]["lo"], "hi": t["opt"]["hi"],
            "vs_fold": t["opt"]["speedup"] / t["fold"]["speedup"]}


def _stats(report) -> tuple[float, float]:
    return report.attrs["macs_total_before"] / report.attrs["macs_total_after"], float(report["error"].sum())


def _onnx_rows(name: str, models: dict, select_time: float, fps_time: float) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (1, 32):
            x = torch.rand(batch, 3, 32, 32)
            variants = {"dense": models["dense"], "gdws": models["gdws"], "opt": _opt(models["gdws"], x, select_time)}
            eager = paired_speedups(variants, x, fps_time)
            ort = {k: ort_fps(export_onnx(m, x, Path(tmp) / f"{k}.onnx"), (3, 32, 32), batch, fps_time)["fps"]
                   for k, m in variants.items()}
            f = {k: batch / v["s"] for k, v in eager.items()}
            rows.append(f"| {name} | {batch} | {f['dense']:.1f} | {f['gdws']:.1f} | {f['opt']:.1f} | "
                        f"{f['opt'] / f['dense']:.2f} | {ort['dense']:.1f} | {ort['gdws']:.1f} | {ort['opt']:.1f} | "
                        f"{ort['opt'] / ort['dense']:.2f} | {ort['opt'] / f['opt']:.2f} |")
            print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write the markdown tables."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vgg16,preact_resnet18")
    p.add_argument("--ratios", default="1.5,2,2.5", help="requested speed-ups r")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--latency-time", type=float, default=0.03, help="seconds per timing inside convert(speedup=)")
    p.add_argument("--select-time", type=float, default=0.05, help="seconds per candidate form when optimising")
    p.add_argument("--fps-time", type=float, default=0.4, help="seconds per model and round of end-to-end timing")
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--out", default="results/perf/bench_speedup_cpu.md")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpts = dict(item.split("=", 1) for item in args.checkpoint)
    lines = header("Latency budget convert(speedup=r) vs MAC budget, measured on this CPU")
    main_rows, onnx_rows = [], []
    t0 = time.time()
    x = torch.rand(1, 3, 32, 32)
    for name in args.models.split(","):
        torch.manual_seed(0)
        dense = create_model(name).eval()
        if name in ckpts:
            load_checkpoint(dense, ckpts[name])
        folded = fold_batchnorm(copy.deepcopy(dense))
        weights = f"checkpoint {ckpts[name]}" if name in ckpts else "random init"
        onnx_model = None
        for r in (float(v) for v in args.ratios.split(",")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                conv_l, rep_l = convert(dense, speedup=r, example_input=x, latency_time=args.latency_time)
            mac_l, err_l = _stats(rep_l)
            lat = _measure(dense, folded, conv_l, x, args.select_time, args.fps_time)
            conv_m, rep_m = convert(dense, macs_ratio=r)
            mac = _measure(dense, folded, conv_m, x, args.select_time, args.fps_time)
            # one secant step in the MAC ratio towards the latency-aware model's measured speed
            r2 = max(1.0, r * lat["speedup"] / max(mac["speedup"], 1e-6))
            conv_m2, rep_m2 = convert(dense, macs_ratio=r2)
            mac2 = _measure(dense, folded, conv_m2, x, args.select_time, args.fps_time)
            e1, e2 = _stats(rep_m)[1], _stats(rep_m2)[1]
            s1, s2 = mac["speedup"], mac2["speedup"]
            e_at = e1 if abs(s2 - s1) < 1e-9 else e1 + (e2 - e1) * (lat["speedup"] - s1) / (s2 - s1)
            main_rows.append(
                f"| {name} | {weights} | {r:g} | {rep_l.attrs['speedup_measured']:.2f} | {lat['speedup']:.2f} "
                f"({lat['lo']:.2f}-{lat['hi']:.2f}) | {lat['vs_fold']:.2f} | {lat['speedup'] / r:.2f} | {mac_l:.2f} | "
                f"{err_l:.4g} | {rep_l.attrs['error_gap']:.2g} | {s1:.2f} ({mac['lo']:.2f}-{mac['hi']:.2f}) | {e1:.4g} | "
                f"{r2:.2f}: {s2:.2f} | {e2:.4g} | {e_at:.4g} |")
            print(main_rows[-1], flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text("\n".join(lines + ["(in progress: rows so far)", "", *main_rows]) + "\n")
            if abs(r - 2.0) < 1e-9:
                onnx_model = conv_l
        if onnx_model is not None and not args.no_onnx:
            onnx_rows += _onnx_rows(name, {"dense": dense, "gdws": onnx_model}, args.select_time, args.fps_time)
    lines += [
        "| model | weights | requested r | measured in convert | re-measured speed-up (range of 5 rounds) | "
        "vs BN-folded dense | measured / r | MAC ratio | weighted error | DP gap | macs_ratio=r: speed-up | "
        "its error | secant macs_ratio: speed-up | its error | MAC-based error at the latency-aware speed |",
        "|" + "---|" * 15, *main_rows, ""]
    if onnx_rows:
        lines += ["ONNX Runtime (CPU, same threads) beside PyTorch eager, speedup=2 allocation (optimised per batch size):",
                  "", "| model | batch | eager dense FPS | eager GDWS FPS | eager opt FPS | eager opt/dense | ORT dense FPS | "
                  "ORT GDWS FPS | ORT opt FPS | ORT opt/dense | ORT opt / eager opt |", "|" + "---|" * 11, *onnx_rows, ""]
    lines.append(f"Wall time {time.time() - t0:.0f} s; load average at end {os.getloadavg()[0]:.2f}.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
