"""Command line: `gdws convert` (checkpoint -> converted GDWS model) and `gdws export` (-> ONNX, OpenVINO IR).

    gdws convert CHECKPOINT --model NAME (--beta B | --macs-ratio R | --max-channels G | --speedup R) -o OUT
    gdws export OUT (--onnx FILE | --openvino DIR) [--batch-size N]

OUT is the file format of gdws.cli.artifact (weights plus what is needed to rebuild the architecture).
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from gdws.cli.calibration import add_calibration_arguments, calibration_from_args


def _normalize(value: str) -> str | None:
    return None if value.lower() == "none" else value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gdws", description="GDWS: convert pre-trained CNNs to generalized "
                                "depthwise-separable convolutions, optimise and export them for inference.")
    sub = p.add_subparsers(dest="command", metavar="{convert,export}")
    c = sub.add_parser("convert", help="convert a trained checkpoint to GDWS (no retraining)")
    c.add_argument("checkpoint", help="trained weights (state_dict, Lightning checkpoint, ...) of --model")
    c.add_argument("--model", required=True, help="model name in gdws.models.list_models(), e.g. vgg16")
    c.add_argument("--trusted", action="store_true",
                   help="allow full unpickling of the checkpoint (it can run code: only for files you trust)")
    budget = c.add_mutually_exclusive_group(required=True)
    budget.add_argument("--beta", type=float, help="LEGO per-layer error budget (the paper's beta, e.g. 0.5)")
    budget.add_argument("--macs-ratio", type=float, help="network MAC reduction factor instead of beta")
    budget.add_argument("--max-channels", type=int, help="MEGO per-layer G budget instead of beta")
    budget.add_argument("--speedup", type=float, help="measured latency reduction factor on this machine (e.g. 2): "
                        "least error whose optimised model runs >= R x faster than the dense one")
    c.add_argument("--batch-size", type=int, default=1, help="batch size the --speedup latency is measured at")
    c.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime", "openvino"),
                   help="what the --speedup latency is measured on: the runtime you deploy with (default torch)")
    c.add_argument("--allow-removal", action="store_true",
                   help="let --speedup set G = 0 in a converted layer (default: every converted layer keeps >= 1)")
    c.add_argument("--device", default="cpu", help="device the --speedup latency is measured on (default cpu)")
    c.add_argument("--latency-time", type=float, default=0.05,
                   help="seconds per --speedup timing (default 0.05; more on a busy machine)")
    c.add_argument("--latency-cache", default=None,
                   help="folder of the per-layer latency tables (default ~/.cache/gdws/latency or $GDWS_LATENCY_CACHE)")
    c.add_argument("--width", type=float, default=1.0, help="channel width multiplier of the model (default 1.0)")
    c.add_argument("--num-classes", type=int, default=10, help="classes of the checkpoint's output layer")
    c.add_argument("--normalize", type=_normalize, default="cifar10", help="cifar10 | svhn | none (default cifar10)")
    c.add_argument("--alphas", help="per-channel error weights saved with gdws.core.save_alphas")
    c.add_argument("-o", "--output", required=True, help="output file for the converted model")
    add_calibration_arguments(c)
    e = sub.add_parser("export", help="rebuild a converted model, optimise it and export to ONNX or OpenVINO")
    e.add_argument("converted", help="file written by `gdws convert`")
    target = e.add_mutually_exclusive_group(required=True)
    target.add_argument("--onnx", help="ONNX file to write (checked and timed with onnxruntime)")
    target.add_argument("--openvino", metavar="DIR", help="folder for the OpenVINO IR (model.xml, model.bin), checked "
                        "and timed on the CPU (needs the extra: pip install -e \".[openvino]\")")
    e.add_argument("--batch-size", type=int, default=1, help="batch size to optimise and time for (default 1)")
    e.add_argument("--no-optimize", action="store_true", help="export the straightforward GDWS layers as they are")
    e.add_argument("--min-run-time", type=float, default=0.1,
                   help="seconds of timing per candidate form when optimising (default 0.1; ORT FPS uses 10x)")
    e.add_argument("--atol", type=float, default=1e-4, help="max |runtime - PyTorch| allowed (default 1e-4)")
    return p


def _convert(args: argparse.Namespace) -> dict:
    from gdws.conversion import convert
    from gdws.core import load_alphas
    from gdws.cli.artifact import save_converted_file
    from gdws.models import create_model, load_checkpoint

    model = create_model(args.model, num_classes=args.num_classes, width=args.width, normalize=args.normalize)
    load_checkpoint(model, args.checkpoint, trusted=args.trusted)
    alphas = load_alphas(args.alphas) if args.alphas else None
    budget = dict(beta=args.beta, macs_ratio=args.macs_ratio, max_channels=args.max_channels, speedup=args.speedup)
    timing = {}
    if args.speedup is not None:
        timing = dict(example_input=torch.rand(args.batch_size, 3, 32, 32), device=args.device,
                      latency_cache=args.latency_cache, latency_time=args.latency_time, runtime=args.runtime,
                      allow_removal=args.allow_removal)
    calibration = calibration_from_args(args)
    converted, report = convert(model.eval(), alphas=alphas, **budget, **timing, **calibration)
    meta = {"model": args.model, "width": args.width, "num_classes": args.num_classes, "normalize": args.normalize,
            **budget, "alphas": str(args.alphas) if args.alphas else None, "checkpoint": str(args.checkpoint),
            "calibration": args.calibration, "calibration_settings": calibration and calibration[
                "calibration_settings"].as_dict(),
            "macs_before": int(report.attrs["macs_total_before"]), "macs_after": int(report.attrs["macs_total_after"])}
    out = save_converted_file(converted.cpu(), meta, args.output)
    summary = {"output": str(out), "layers_converted": int(report["converted"].sum()),
               "mac_ratio": meta["macs_before"] / max(meta["macs_after"], 1), **meta}
    if args.speedup is not None:
        summary.update({k: v for k, v in report.attrs.items() if k not in meta})
        summary["layers"] = report.loc[report["form"].notna(), ["name", "G", "form", "latency_ms", "error"]].astype(
            {"G": "float"}).to_dict("records")
    return summary


def _export(args: argparse.Namespace) -> dict:
    from gdws.fast import optimize_for_inference
    from gdws.cli.artifact import load_converted_file
    from gdws.metrics.speed import chosen_forms

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.openvino:
        return _export_openvino(args)
    from gdws.fast.onnx_export import check_onnx, export_onnx, ort_fps

    model, meta = load_converted_file(args.converted)
    x = torch.rand(args.batch_size, 3, 32, 32)
    deployed = model if args.no_optimize else optimize_for_inference(model, x, min_run_time=args.min_run_time,
                                                                     runtime="onnxruntime")
    path = export_onnx(deployed, x, args.onnx)
    err = check_onnx(path, model, x)  # against the converted model as loaded, not only the optimised one
    if not err <= args.atol:
        raise RuntimeError(f"onnxruntime output differs from PyTorch by {err:.3e} > --atol {args.atol}")
    speed = ort_fps(path, (3, 32, 32), args.batch_size, min_run_time=max(10 * args.min_run_time, 0.05))
    return {"onnx": str(path), "max_abs_diff_vs_pytorch": err, "ort_fps": speed["fps"], "forms": chosen_forms(deployed),
            "batch_size": args.batch_size, "threads": speed["threads"], "model": meta["model"]}


def _export_openvino(args: argparse.Namespace) -> dict:
    """The OpenVINO IR of the model whose layers take their fastest exact form on OpenVINO (timed there)."""
    from gdws.cli.artifact import load_converted_file
    from gdws.fast import optimize_for_inference
    from gdws.fast.openvino_runtime import export_openvino, import_openvino
    from gdws.fast.runtimes import runtime_module
    from gdws.metrics import measure_fps
    from gdws.metrics.speed import chosen_forms

    import_openvino()  # a missing extra fails before the model is loaded
    model, meta = load_converted_file(args.converted)
    x = torch.rand(args.batch_size, 3, 32, 32)
    deployed = model if args.no_optimize else optimize_for_inference(model, x, min_run_time=args.min_run_time,
                                                                     runtime="openvino")
    files = export_openvino(deployed, x, args.openvino, reference=model, atol=args.atol)
    speed = measure_fps(runtime_module(deployed, x, "openvino"), (3, 32, 32), args.batch_size,
                        min_run_time=max(10 * args.min_run_time, 0.05))
    return {"openvino_xml": files["xml"], "openvino_bin": files["bin"],
            "max_abs_diff_vs_pytorch": files["max_abs_diff"],
            "openvino_fps": speed["fps"], "forms": chosen_forms(deployed), "openvino": files["openvino"],
            "batch_size": args.batch_size, "threads": speed["threads"], "model": meta["model"]}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gdws` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        result = _convert(args) if args.command == "convert" else _export(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"gdws {args.command}: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    return 0

