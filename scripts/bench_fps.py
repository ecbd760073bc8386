#!/usr/bin/env python
"""FPS of dense vs straightforward GDWS vs optimised GDWS models, side by side in one run.

For each model (full width) and batch size, on the CPU and on CUDA when present:
dense FPS, straightforward GDWS FPS (the converted model as is), optimised GDWS FPS
(gdws.fast.optimize_for_inference for that batch size), the speed-ups and the network MAC ratio.

Weights: --checkpoint NAME=PATH loads trained weights; otherwise the model is at RANDOM INIT (no
pre-trained checkpoints on this machine), which changes LEGO's g (it depends on the weights' spectra),
so each model is also converted at a network MAC budget (convert(macs_ratio=r), r = the paper's FPS
gain for that model) and, with --layer-ratio, with every layer at 1/r of its MACs (per-layer MEGO), so
the speed-vs-MAC comparison does not hinge on random-init spectra.

Example: .venv/bin/python scripts/bench_fps.py --quick
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch
from gdws.core import convert, load_alphas
from gdws.fast import optimize_for_inference
from bench_common import convert_every_layer
from gdws.metrics import device_name, interleaved_fps
from gdws.models import create_model, load_checkpoint

# the poster's beta (VGG-16 0.5, PreAct ResNet-18 0.75; the RobNet table gives none: 0.5) and the paper's
# FPS gain (GDWS FPS / dense FPS on the Jetson Xavier) used as the MAC budget r for random-init weights;
# PreAct ResNet-50's 2.3 is unreachable (its 1x1 convs, ~53 % of MACs, are never converted): 1.8 instead
PAPER = {"vgg16": (0.5, 2.8), "preact_resnet18": (0.75, 3.75), "wrn28_4": (0.5, 3.8), "preact_resnet50": (0.5, 1.8)}


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(PAPER), help="comma-separated model names")
    p.add_argument("--batch", default=None, help="comma-separated batch sizes (default 1,32 on CPU; 1,256 on CUDA)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH", help="trained weights")
    p.add_argument("--beta", type=float, default=None, help="LEGO beta for every model (default: the poster's)")
    p.add_argument("--width", type=float, default=1.0, help="model width multiplier (that of the checkpoint)")
    p.add_argument("--convert", action="append", default=[], metavar="NAME=VALUE",
                   help="a conversion to time instead of the default two (repeatable): beta=5, macs_ratio=1.5, ...")
    p.add_argument("--alphas", default=None, help="alphas file (gdws.core.save_alphas) weighting every conversion")
    p.add_argument("--layer-ratio", action="store_true", help="also convert every layer at 1/r of its MACs")
    p.add_argument("--devices", default="auto", help="cpu, cuda or auto (cpu, plus cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="batch 1 and 16, shorter timings (a smoke run)")
    p.add_argument("--fps-time", type=float, default=None, help="seconds of FPS timing per model (default 1.5)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved FPS rounds, median taken (default 3)")
    p.add_argument("--select-time", type=float, default=None, help="seconds per candidate form (default 0.05)")
    p.add_argument("--out", default=None, help="output markdown (default results/perf/bench_fps_<date>.md)")
    return p.parse_args(argv)


def _checkpoints(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--checkpoint expects NAME=PATH (e.g. vgg16=ckpt/vgg16.pt), got {item!r}")
        name, path = item.split("=", 1)
        out[name] = path
    return out


def _conversions(items: list[str]) -> list[tuple[str, dict]]:
    """--convert NAME=VALUE items as (label, convert() keyword arguments)."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in ("beta", "max_channels", "macs_ratio"):
            raise SystemExit(f"--convert expects beta=, max_channels= or macs_ratio=VALUE, got {item!r}")
        out.append((item, {name: int(value) if name == "max_channels" else float(value)}))
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write the markdown table."""
    args = _args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpts = _checkpoints(args.checkpoint)
    fps_time = args.fps_time or (0.3 if args.quick else 1.5)
    rounds = args.rounds or (1 if args.quick else 3)
    select_time = args.select_time or (0.02 if args.quick else 0.05)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" else [args.devices]
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    load0 = os.getloadavg()
    t0 = time.time()
    lines = ["# GDWS FPS benchmark", "", f"Command: `{command}`", "",
             f"Date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}; torch {torch.__version__}; "
             f"python {platform.python_version()}; threads {torch.get_num_threads()}; "
             f"load average at start {load0[0]:.2f} (1 min) on {os.cpu_count()} CPUs", ""]
    header = ("| device | model | weights | conversion | MAC ratio | batch | dense FPS | dense opt FPS | GDWS FPS | "
              "opt FPS | GDWS/dense | opt/dense | opt/(dense opt) | opt/GDWS | opt forms |")
    rows: list[str] = []

    out = Path(args.out or f"results/perf/bench_fps_{datetime.datetime.now(datetime.timezone.utc):%Y%m%d_%H%M}.md")
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(footer: list[str]) -> None:
        out.write_text("\n".join(lines + footer + ["", header, "|" + "---|" * 15, *rows, ""]))

    def emit(row: str) -> None:
        rows.append(row)
        print(row, flush=True)
        write(["", "(run in progress or interrupted: rows so far)"])

    print(header, flush=True)
    for dev in devices:
        batches = [int(b) for b in args.batch.split(",")] if args.batch else (
            [1, 16] if args.quick else ([1, 32] if dev == "cpu" else [1, 256]))
        lines.append(f"- {dev}: {device_name(dev)}")
        for name in args.models.split(","):
            if name not in PAPER and args.beta is None:
                raise SystemExit(f"no default beta for {name}; pass --beta")
            beta, r = PAPER.get(name, (args.beta, 2.0))
            beta = args.beta if args.beta is not None else beta
            torch.manual_seed(0)
            dense = create_model(name, width=args.width).eval()
            weights = "random init"
            if name in ckpts:
                load_checkpoint(dense, ckpts[name])
                weights = f"checkpoint {ckpts[name]}"
            variants = []
            alphas = load_alphas(args.alphas) if args.alphas else None
            for label, kw in _conversions(args.convert) or ((f"beta={beta}", {"beta": beta}),
                                                            (f"macs_ratio={r}", {"macs_ratio": r})):
                conv, report = convert(dense, alphas=alphas, **kw)
                label += " (alphas)" if alphas else ""
                variants.append((label, conv.eval(), report.attrs["macs_total_before"] / report.attrs["macs_total_after"]))
            if args.layer_ratio:
                conv, ratio = convert_every_layer(dense, r)
                variants.append((f"every layer 1/{r}", conv, ratio))
            dense = dense.to(dev)
            for batch in batches:
                x = torch.rand(batch, 3, 32, 32, device=dev)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "no GDWS layers": the dense model, BN folded, layouts chosen
                    dense_opt = optimize_for_inference(dense, x, min_run_time=select_time)  # the fair baseline
                models, info = {"dense": dense, "fold": dense_opt}, {}
                for label, conv, ratio in variants:
                    conv = conv.to(dev)
                    t_sel = time.time()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        opt, table = optimize_for_inference(conv, x, min_run_time=select_time, report=True)
                    t_sel = time.time() - t_sel
                    models[("gdws", label)], models[("opt", label)] = conv, opt
                    forms = table["chosen"].value_counts().items() if len(table) else []
                    info[label] = (ratio, (", ".join(f"{k}:{v}" for k, v in forms) or "-") + f" ({t_sel:.0f} s)")
                fps = interleaved_fps(models, (3, 32, 32), batch, dev, rounds=rounds, min_run_time=fps_time / rounds)
                for label, (ratio, forms) in info.items():
                    f_dense, f_fold = fps["dense"], fps["fold"]
                    f_gdws, f_opt = fps[("gdws", label)], fps[("opt", label)]
                    emit(f"| {dev} | {name} | {weights} | {label} | {ratio:.2f} | {batch} | {f_dense:.1f} | "
                         f"{f_fold:.1f} | {f_gdws:.1f} | {f_opt:.1f} | {f_gdws / f_dense:.2f} | "
                         f"{f_opt / f_dense:.2f} | {f_opt / f_fold:.2f} | {f_opt / f_gdws:.2f} | {forms} |")
    load1 = os.getloadavg()
    write(["", f"Wall time {time.time() - t0:.0f} s; load average at end {load1[0]:.2f} (1 min). "
              "A load above the thread count means other processes shared the CPU (noisy timings).", "",
              f"FPS = batch / median seconds per batch (gdws.metrics.measure_fps, torch.utils.benchmark "
              f"blocked_autorange), median of {rounds} rounds interleaved over the models of a row group. "
           "'opt forms' counts the form chosen per GDWS layer (zero = G = 0 layer) and the selection time."])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
