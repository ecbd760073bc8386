"""Command line: `gdws convert` (checkpoint -> converted GDWS model) and `gdws export` (-> optimised ONNX).

    gdws convert CHECKPOINT --model NAME --beta B [--width W] [--alphas FILE] -o OUT
    gdws export OUT --onnx FILE [--batch-size N]

OUT holds {"format", "meta", "state_dict"}: meta records the model name, width, number of classes,
normalisation and conversion settings, so `export` can rebuild the architecture and load the GDWS layers
with gdws.core.load_converted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

FORMAT = "gdws-converted/1"


def _normalize(value: str) -> str | None:
    return None if value.lower() == "none" else value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gdws", description="GDWS: convert pre-trained CNNs to generalized "
                                "depthwise-separable convolutions, optimise and export them for inference.")
    sub = p.add_subparsers(dest="command", metavar="{convert,export}")
    c = sub.add_parser("convert", help="convert a trained checkpoint to GDWS (no retraining)")
    c.add_argument("checkpoint", help="trained weights (state_dict, Lightning checkpoint, ...) of --model")
    c.add_argument("--model", required=True, help="model name in gdws.models.list_models(), e.g. vgg16")
    budget = c.add_mutually_exclusive_group(required=True)
    budget.add_argument("--beta", type=float, help="LEGO per-layer error budget (the paper's beta, e.g. 0.5)")
    budget.add_argument("--macs-ratio", type=float, help="network MAC reduction factor instead of beta")
    budget.add_argument("--max-channels", type=int, help="MEGO per-layer G budget instead of beta")
    c.add_argument("--width", type=float, default=1.0, help="channel width multiplier of the model (default 1.0)")
    c.add_argument("--num-classes", type=int, default=10, help="classes of the checkpoint's output layer")
    c.add_argument("--normalize", type=_normalize, default="cifar10", help="cifar10 | svhn | none (default cifar10)")
    c.add_argument("--alphas", help="per-channel error weights saved with gdws.core.save_alphas")
    c.add_argument("-o", "--output", required=True, help="output file for the converted model")
    e = sub.add_parser("export", help="rebuild a converted model, optimise it and export to ONNX")
    e.add_argument("converted", help="file written by `gdws convert`")
    e.add_argument("--onnx", required=True, help="ONNX file to write")
    e.add_argument("--batch-size", type=int, default=1, help="batch size to optimise and time for (default 1)")
    e.add_argument("--no-optimize", action="store_true", help="export the straightforward GDWS layers as they are")
    e.add_argument("--min-run-time", type=float, default=0.1,
                   help="seconds of timing per candidate form when optimising (default 0.1; ORT FPS uses 10x)")
    e.add_argument("--atol", type=float, default=1e-4, help="max |onnxruntime - PyTorch| allowed (default 1e-4)")
    return p


def _convert(args: argparse.Namespace) -> dict:
    from gdws.core import convert, load_alphas
    from gdws.models import create_model, load_checkpoint

    model = create_model(args.model, num_classes=args.num_classes, width=args.width, normalize=args.normalize)
    load_checkpoint(model, args.checkpoint)
    alphas = load_alphas(args.alphas) if args.alphas else None
    converted, report = convert(model.eval(), beta=args.beta, macs_ratio=args.macs_ratio,
                                max_channels=args.max_channels, alphas=alphas)
    meta = {"model": args.model, "width": args.width, "num_classes": args.num_classes, "normalize": args.normalize,
            "beta": args.beta, "macs_ratio": args.macs_ratio, "max_channels": args.max_channels,
            "alphas": str(args.alphas) if args.alphas else None, "checkpoint": str(args.checkpoint),
            "macs_before": int(report.attrs["macs_total_before"]), "macs_after": int(report.attrs["macs_total_after"])}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "meta": meta, "state_dict": converted.state_dict()}, out)
    return {"output": str(out), "layers_converted": int(report["converted"].sum()),
            "mac_ratio": meta["macs_before"] / max(meta["macs_after"], 1), **meta}


def load_converted_file(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the eval-mode converted model and its metadata from a file written by `gdws convert`."""
    from gdws.core import load_converted
    from gdws.models import create_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no converted model at {path}; create one with `gdws convert CHECKPOINT ... -o {path}`")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by `gdws convert` (missing format {FORMAT!r}); convert it first")
    meta = data["meta"]
    model = create_model(meta["model"], num_classes=meta["num_classes"], width=meta["width"],
                         normalize=meta["normalize"])
    return load_converted(model, data["state_dict"]).eval(), meta


def _export(args: argparse.Namespace) -> dict:
    from gdws.fast import optimize_for_inference
    from gdws.fast.onnx_export import check_onnx, export_onnx, ort_fps

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    model, meta = load_converted_file(args.converted)
    x = torch.rand(args.batch_size, 3, 32, 32)
    deployed = model if args.no_optimize else optimize_for_inference(model, x, min_run_time=args.min_run_time)
    path = export_onnx(deployed, x, args.onnx)
    err = check_onnx(path, model, x)  # against the converted model as loaded, not only the optimised one
    if not err <= args.atol:
        raise RuntimeError(f"onnxruntime output differs from PyTorch by {err:.3e} > --atol {args.atol}")
    speed = ort_fps(path, (3, 32, 32), args.batch_size, min_run_time=max(10 * args.min_run_time, 0.05))
    return {"onnx": str(path), "max_abs_diff_vs_pytorch": err, "ort_fps": speed["fps"],
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


if __name__ == "__main__":
    sys.exit(main())
