#!/usr/bin/env python
"""Per-layer roofline of a converted model: dense What conv vs depthwise stage vs pointwise stage.

For every GDWS layer (real input shape from one forward pass) it times the dense What conv, the
depthwise stage (gather + groups=G conv, and the 'stacked' multiplier-1 convs), the pointwise 1x1 conv
(NCHW and channels_last) and every full form, and prints achieved GFLOP/s and GB/s (compulsory
traffic: weights + input + output, fp32) next to the machine's measured GEMM and copy peaks.

Example: .venv/bin/python scripts/bench_layer_forms.py --model vgg16 --every-layer 2.8 --batch 1
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
from pathlib import Path

import torch
from torch import nn

from gdws.core import GDWSConv2d, convert
from bench_common import convert_every_layer, machine_peaks
from gdws.fast.candidates import build_forms
from gdws.fast.forms import Stacked, Straightforward
from gdws.fast.timing import capture_inputs, time_call
from gdws.fast.spec import GDWSSpec
from gdws.metrics import device_name
from gdws.models import create_model, load_checkpoint


def _stage_modules(spec: GDWSSpec) -> dict[str, nn.Module]:
    """The two stages of the straightforward and stacked forms as separate callables."""
    sf, st = Straightforward(spec), Stacked(spec)
    return {"dw_gather": lambda x: sf.depthwise(x.index_select(1, sf.index)),
            "dw_stacked": lambda x: torch.cat([c(x.narrow(1, 0, c.in_channels)) for c in st.convs], 1)
            if not st.gather else torch.cat([c(x.index_select(1, st.perm).narrow(1, 0, c.in_channels))
                                             for c in st.convs], 1),
            "pw": sf.pointwise}


def main(argv: list[str] | None = None) -> None:
    """Run the per-layer benchmark and print / write a markdown table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vgg16")
    p.add_argument("--checkpoint", default=None, help="trained weights (default: random init)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--every-layer", type=float, default=None, help="each layer at 1/r of its MACs (MEGO)")
    budget.add_argument("--macs-ratio", type=float, default=None, help="network MAC budget (convert)")
    budget.add_argument("--beta", type=float, default=None, help="LEGO beta (convert)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--time", type=float, default=0.2, help="seconds per timing")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile of the straightforward form (compiles each layer: minutes)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.model).eval()
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    if args.macs_ratio or args.beta:
        conv, report = convert(model, macs_ratio=args.macs_ratio, beta=args.beta)
        label = f"macs_ratio={args.macs_ratio}" if args.macs_ratio else f"beta={args.beta}"
    else:
        r = args.every_layer or 2.8
        conv, _ = convert_every_layer(model, r)
        label = f"every layer 1/{r}"
    names = [n for n, m in conv.named_modules() if isinstance(m, GDWSConv2d)]
    inputs, _ = capture_inputs(conv, names, torch.rand(args.batch, 3, 32, 32))
    peaks = machine_peaks()
    out = [f"# Per-layer roofline: {args.model} ({'checkpoint ' + args.checkpoint if args.checkpoint else 'random init'}), "
           f"{label}, batch {args.batch}", "",
           f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`", "",
           f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {device_name('cpu')}; threads "
           f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}; measured peaks: fp32 GEMM "
           f"{peaks['gemm_gflops']:.0f} GFLOP/s, copy {peaks['copy_gbs']:.1f} GB/s", "",
           "| layer | C->M | HxW out | G | dense us | dense GF/s | dense GB/s | dw us (gather / stacked) | dw GF/s | "
           "dw GB/s | pw us | pw GF/s | pw GB/s | best form | best us | dense/best |", "|" + "---|" * 16]
    print("\n".join(out), flush=True)
    tot = {"dense": 0.0, "dw": 0.0, "pw": 0.0, "best": 0.0}
    for name in names:
        layer, x = conv.get_submodule(name), inputs[name]
        spec = GDWSSpec.from_layer(layer)
        b, c, h, w = x.shape
        ho, wo = layer.output_size((h, w))
        m, kk, G = spec.out_channels, spec.kernel_size[0] * spec.kernel_size[1], spec.G
        with torch.no_grad():
            forms = build_forms(spec, compile=args.compile)
            t = {k: time_call(f, x, args.time).median for k, f in forms.items()}
            if G == 0:
                continue
            stages = _stage_modules(spec)
            t_dwg = time_call(stages["dw_gather"], x, args.time).median
            t_dws = time_call(stages["dw_stacked"], x, args.time).median
            mid = stages["dw_gather"](x)
            t_pw = time_call(stages["pw"], mid, args.time).median
        t_dense = min(t["dense"], t["dense_cl"])
        t_dw = min(t_dwg, t_dws)
        best = min(t, key=t.get)
        px = b * ho * wo
        fl = {"dense": 2 * m * c * kk * px, "dw": 2 * G * kk * px, "pw": 2 * m * G * px}
        by = {"dense": 4 * (m * c * kk + x.numel() + m * px), "dw": 4 * (G * kk + x.numel() + G * px),
              "pw": 4 * (m * G + G * px + m * px)}
        tot["dense"] += t_dense
        tot["dw"] += t_dw
        tot["pw"] += t_pw
        tot["best"] += t[best]
        row = (f"| {name} | {c}->{m} | {ho}x{wo} | {G} | {t_dense * 1e6:.0f} | {fl['dense'] / t_dense / 1e9:.1f} | "
               f"{by['dense'] / t_dense / 1e9:.1f} | {t_dwg * 1e6:.0f} / {t_dws * 1e6:.0f} | {fl['dw'] / t_dw / 1e9:.1f} | "
               f"{by['dw'] / t_dw / 1e9:.1f} | {t_pw * 1e6:.0f} | {fl['pw'] / t_pw / 1e9:.1f} | "
               f"{by['pw'] / t_pw / 1e9:.1f} | {best} | {t[best] * 1e6:.0f} | {t_dense / t[best]:.2f} |")
        out.append(row)
        print(row, flush=True)
    summary = (f"\nSum over GDWS layers: dense What {tot['dense'] * 1e3:.3f} ms; depthwise stages {tot['dw'] * 1e3:.3f} ms"
               f" + pointwise stages {tot['pw'] * 1e3:.3f} ms; best forms {tot['best'] * 1e3:.3f} ms "
               f"(dense/best {tot['dense'] / max(tot['best'], 1e-12):.2f}x).")
    out.append(summary)
    print(summary)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
