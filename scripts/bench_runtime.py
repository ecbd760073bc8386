"""Dense vs data-aware GDWS at several MAC ratios, timed on torch, onnxruntime and OpenVINO (issue 26).

Converts a trained VGG-16 (any weights file and width) with the data-aware method (mixed calibration, Fisher) at each
--ratios, picks each network's fastest exact graph per runtime and batch size (optimize_for_inference(runtime=...),
chosen at 1 thread), then times every network on every runtime interleaved in one process (time_rounds, round
robin), per thread count and batch size: median and spread (min-max over rounds) of the paired dense / GDWS ratio.
Also times one GDWS layer's depthwise and pointwise stages apart on each runtime. Accuracies are not computed here:
scripts/bench_runtime_plot.py --rows joins the speed ratios with run.py rows of the same settings. Run it with
nothing else on the CPU (or convert and choose once with --networks FILE --choose-only, then re-time from FILE
while the machine is quiet):

    python scripts/bench_runtime.py --weights ../shared/weights/vgg16_w0.5_fgsm_rs_e12.pt --width 0.5 \
        --out results/perf/bench_runtime_vgg16_w0.5.md
"""
from __future__ import annotations

import argparse
import os
import statistics
import warnings

import pandas as pd
import torch
import yaml
from torch import nn

import gdws
from bench_common import header
from gdws.data import CIFAR10DataModule
from gdws.fast import optimize_for_inference
from gdws.fast.forms import Straightforward
from gdws.fast.runtimes import runtime_module, runtime_version
from gdws.fast.select import compiled
from gdws.fast.spec import GDWSSpec
from gdws.fast.timing import time_rounds
from gdws.metrics import count_macs
from gdws.metrics.speed import chosen_forms
from gdws.models import create_model, load_checkpoint
from gdws.pipeline.calibration import draw_calibration


def convert_all(dense: nn.Module, ratios: list[float], samples: int, data: str) -> dict[str, nn.Module]:
    """{'dense': dense, 'R x': data-aware GDWS at MAC ratio R} (mixed calibration of the run.py default attack)."""
    attack = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "conf/gdws/default.yaml")))
    dm = CIFAR10DataModule(root=data, train_subset=None, val_size=1000)
    dm.prepare_data()
    calib = draw_calibration(dm, dense, samples, "mixed", attack["calibration_attack"])
    nets = {"dense": dense}
    for r in ratios:
        nets[f"{r:g}x"], report = gdws.convert(dense, macs_ratio=r, calibration=calib, fisher=True)
        print(f"{r:g}x: {int(report['converted'].sum())} layers, G=0 in {int((report['G'] == 0).sum())}", flush=True)
    return nets


def select(nets: dict[str, nn.Module], runtimes: list[str], batches: list[int], seconds: float) -> dict:
    """{(runtime, batch): {name: network in its fastest exact graph there}} (chosen at the current thread count)."""
    chosen = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rt in runtimes:
            for b in batches:
                x = torch.rand(b, 3, 32, 32)
                chosen[rt, b] = {k: optimize_for_inference(m, x, min_run_time=seconds, runtime=rt)
                                 for k, m in nets.items()}
                print(rt, b, {k: chosen_forms(m) for k, m in chosen[rt, b].items()}, flush=True)
    return chosen


def time_all(chosen: dict, threads: list[int], seconds: float, rounds: int) -> pd.DataFrame:
    """One row per (threads, batch, runtime, network): median images/s and the paired ratio to dense (median, min,
    max over rounds); every network of every runtime is timed in the same interleaved rounds."""
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        for b in sorted({b for _, b in chosen}):
            x = torch.rand(b, 3, 32, 32)
            mods = {(rt, k): runtime_module(m, x, rt, threads=t) for (rt, bb), nets in chosen.items() if bb == b
                    for k, m in nets.items()}
            runs = time_rounds({f"{rt}|{k}": m for (rt, k), m in mods.items()}, x, seconds * len(mods), rounds)
            for (rt, k) in mods:
                own, dense = runs[f"{rt}|{k}"], runs[f"{rt}|dense"]
                ratio = [d / s for d, s in zip(dense, own)]
                rows.append({"threads": t, "batch": b, "runtime": rt, "net": k, "img_s": b / statistics.median(own),
                             "ratio": statistics.median(ratio), "ratio_min": min(ratio), "ratio_max": max(ratio)})
            print(pd.DataFrame(rows[-len(mods):]).round(3).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def stage_split(net: nn.Module, runtimes: list[str], seconds: float) -> pd.DataFrame:
    """Depthwise (gather + groups=G conv) vs pointwise (1x1) time of the GDWS layer with most MACs, per runtime,
    batch 1, beside the layer's dense conv (What)."""
    x = torch.rand(1, 3, 32, 32)
    inputs = {}
    layers = {n: m for n, m in net.named_modules() if isinstance(m, gdws.GDWSConv2d) and m.num_intermediate > 0}
    hooks = [m.register_forward_pre_hook(lambda mod, a, n=n: inputs.__setitem__(n, a[0])) for n, m in layers.items()]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    name = max(layers, key=lambda n: layers[n].num_intermediate * inputs[n].shape[-1] ** 2)
    spec, xin = GDWSSpec.from_layer(layers[name]), inputs[name]
    form = Straightforward(spec)

    class Depthwise(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.form = form  # a submodule, so that the exporter sees its weights as parameters

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.form.depthwise(z.index_select(1, self.form.index))

    with torch.no_grad():
        mid = Depthwise()(xin)
    rows = []
    for rt in runtimes:
        parts = {"depthwise": (Depthwise(), xin), "pointwise": (form.pointwise, mid), "whole": (form, xin),
                 "dense What": (layers[name].to_conv(), xin)}
        runs = {k: time_rounds(compiled({k: m}, z, rt), z, seconds, 5)[k] for k, (m, z) in parts.items()}
        rows += [{"runtime": rt, "layer": f"{name} C={spec.in_channels} M={spec.out_channels} G={spec.G} "
                  f"HW={xin.shape[-1]}", "stage": k, "us": 1e6 * statistics.median(v)} for k, v in runs.items()]
    return pd.DataFrame(rows)


def _block(df: pd.DataFrame) -> str:
    return "```\n" + df.to_string(index=False) + "\n```"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--width", type=float, required=True)
    p.add_argument("--ratios", default="1.5,2,3,4")
    p.add_argument("--runtimes", default="torch,onnxruntime,openvino")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batches", default="1,64")
    p.add_argument("--samples", type=int, default=1024, help="calibration images (half PGD)")
    p.add_argument("--data", default=os.environ.get("GDWS_DATA", "data"))
    p.add_argument("--select-time", type=float, default=0.02, help="seconds per candidate form when choosing")
    p.add_argument("--seconds", type=float, default=0.3, help="seconds per network and round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", required=True, help="markdown file; a CSV beside it")
    p.add_argument("--networks", help="file of the converted networks in their chosen forms: written after choosing; "
                   "when it exists, read instead of converting and choosing (to re-time on a quiet machine)")
    p.add_argument("--choose-only", action="store_true", help="stop after writing --networks")
    args = p.parse_args()
    torch.manual_seed(0)
    ratios, runtimes = [float(r) for r in args.ratios.split(",")], args.runtimes.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    if args.choose_only and not args.networks:
        p.error("--choose-only needs --networks FILE")
    if args.networks and os.path.exists(args.networks):
        saved = torch.load(args.networks, weights_only=False)  # our own file, written below
        nets, chosen = saved["nets"], saved["chosen"]
        wanted = {(rt, b) for rt in runtimes for b in batches}
        if not wanted <= set(chosen) or set(nets) != {"dense", *(f"{r:g}x" for r in ratios)}:
            p.error(f"{args.networks} holds {sorted(nets)} chosen for {sorted(chosen)}: not these --ratios, "
                    "--runtimes and --batches (delete it to convert and choose again)")
        chosen = {k: v for k, v in chosen.items() if k in wanted}
    else:
        dense = load_checkpoint(create_model("vgg16", width=args.width), args.weights).eval()
        nets = convert_all(dense, ratios, args.samples, args.data)
        torch.set_num_threads(1)
        chosen = select(nets, runtimes, batches, args.select_time)
        if args.networks:
            torch.save({"nets": nets, "chosen": chosen}, args.networks)
            print(f"wrote {args.networks}", flush=True)
    if args.choose_only:
        return
    macs = {k: count_macs(m) for k, m in nets.items()}
    torch.set_num_threads(1)
    table = time_all(chosen, [int(t) for t in args.threads.split(",")], args.seconds, args.rounds)
    table["mac_ratio"] = table["net"].map(lambda k: macs["dense"] / macs[k])
    torch.set_num_threads(1)
    split = stage_split(nets[f"{max(ratios):g}x"], runtimes, args.seconds)
    table.to_csv(args.out.replace(".md", ".csv"), index=False)
    forms = "\n".join(f"- {rt} batch {b}: " + "; ".join(f"{k} {chosen_forms(m)}" for k, m in nets_.items())
                      for (rt, b), nets_ in chosen.items())
    versions = ", ".join(f"{rt} {runtime_version(rt)}" for rt in runtimes)
    with open(args.out, "w") as f:
        f.write("\n".join(header(f"Dense vs data-aware GDWS on {versions}")) + "\n")
        f.write(_block(table.round(3)) + "\n\n## Forms chosen per runtime (at 1 thread)\n\n" + forms)
        f.write("\n\n## One GDWS layer's stages, batch 1, 1 thread (median us)\n\n" + _block(split.round(1)) + "\n")
    print(split.round(1).to_string(index=False))


if __name__ == "__main__":
    main()
