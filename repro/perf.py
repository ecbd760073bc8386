"""Step program of the reproduction run: inference speed of a trained network, dense against its GDWS versions.

    python -m repro.perf --out speed.csv --network NAME --device cuda --common JSON \
        --variant dense '["gdws=none"]' --variant gdws '["gdws.beta=0.75", "gdws.alphas=pgd"]' ...

Each variant is built as run.py builds its row (same overrides: the training's checkpoint, the cached alphas,
the conversion), then made as fast as its exact forms allow (``optimize_for_inference``, BN folded; ``--forms
plain`` skips this) at each batch size, and timed in interleaved rounds eagerly and, on CUDA, replayed from a
CUDA graph. One CSV row per (variant, batch size, graph) is appended to ``--out``. A variant that cannot be built
is recorded with its error; the step fails only when the dense network or every GDWS variant failed.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["network", "variant", "constraint", "macs", "batch_size", "forms", "cuda_graph", "fps", "device", "error"]


class GraphedForward(nn.Module):
    """``model``'s forward at one input shape, captured once in a CUDA graph and replayed per call.

    The input is copied into the captured (static) input; the returned tensor is the captured output, overwritten
    by the next call. Capture and calls run under inference mode.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor, warmup: int = 3) -> None:
        super().__init__()
        # Plain attributes, not submodules: .to()/.eval() on this wrapper must not touch the captured network.
        object.__setattr__(self, "net", model.eval())
        with torch.inference_mode():
            self.static_in = example.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up off the capture stream (cudnn picks its kernels here)
                for _ in range(warmup):
                    model(self.static_in)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_out = model(self.static_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Replay the graph on ``x`` (same shape as the example)."""
        self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out


def build_variant(overrides: list[str], device: torch.device, out_dir: Path) -> tuple[nn.Module, str | None]:
    """The network of one row (trained weights loaded, GDWS applied as the row does) and its constraint."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from gdws.pipeline.constraint import with_typed_constraint
    from gdws.pipeline.runner import build_model
    from gdws.pipeline.transform import apply_gdws
    from gdws.pipeline.validate import active_constraint
    from gdws.pipeline.weights import obtain_weights

    # as run.py does: a typed constraint replaces the one the configs set
    overrides = with_typed_constraint([*overrides, f"paths.output_dir={out_dir}"])
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    constraint = active_constraint(cfg)
    datamodule = instantiate(cfg.data)
    model = build_model(cfg)
    obtain_weights(cfg, model, datamodule, None)
    model = model.to(device).eval()
    if constraint is not None:
        model, _ = apply_gdws(cfg, model, datamodule, device, out_dir, constraint)
    return model, constraint


def time_variants(models: dict[str, nn.Module], batch_size: int, device: torch.device, rounds: int,
                  min_run_time: float, select_time: float | None) -> tuple[dict, dict]:
    """FPS of every model eagerly and, on CUDA, from a CUDA graph, timed interleaved; each model in its fastest
    exact forms (optimize_for_inference, ``select_time`` s per candidate) unless ``select_time`` is None.

    Returns ({(name, graph): fps}, {(name, graph): error}) for graph in (False, True).
    """
    from gdws.fast import optimize_for_inference
    from gdws.metrics.speed import interleaved_fps

    x = torch.rand(batch_size, 3, 32, 32, device=device)
    timed, errors = {}, {}
    for name, model in models.items():
        try:
            fast = model if select_time is None else optimize_for_inference(model, x, device=device,
                                                                            min_run_time=select_time)
        except Exception as exc:  # noqa: BLE001  (recorded; the other variants are still timed)
            errors[(name, False)] = errors[(name, True)] = f"optimize_for_inference failed: {exc}"[:300]
            continue
        timed[(name, False)] = fast
        if device.type != "cuda":
            errors[(name, True)] = "no CUDA: graphs not timed"
            continue
        try:
            timed[(name, True)] = GraphedForward(fast, x)
        except RuntimeError as exc:  # a form that syncs with the host cannot be captured
            errors[(name, True)] = f"graph capture failed: {str(exc).splitlines()[0][:200]}"
    fps = interleaved_fps(timed, (3, 32, 32), batch_size, device, rounds=rounds, warmup=3, min_run_time=min_run_time)
    return fps, errors


def main() -> int:
    """Build the variants, time them at each batch size, append the rows to --out."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--network", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--common", type=json.loads, default=[], help="JSON list of run.py overrides for every variant")
    parser.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-run-time", type=float, default=0.3)
    parser.add_argument("--select-time", type=float, default=0.02)
    parser.add_argument("--forms", choices=("fast", "plain"), default="fast",
                        help="fast: optimize_for_inference first (BN folded, fastest exact forms); plain: as built")
    args = parser.parse_args()
    from gdws.metrics import count_macs
    from gdws.metrics.fps import device_name

    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    models, rows, failed = {}, [], []
    for name, extra in args.variant:
        base = {"network": args.network, "variant": name}
        try:
            model, constraint = build_variant([*args.common, *json.loads(extra)], device, args.out.parent / "perf")
        except Exception as exc:  # noqa: BLE001  (one variant's failure is recorded; the others are still timed)
            failed.append(name)
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            rows.append({**base, "error": f"{type(exc).__name__}: {first}"})
            continue
        models[name] = model
        base.update(constraint=constraint or "dense", macs=count_macs(model, (3, 32, 32)))
        for bs in args.batch_sizes:
            rows += [{**base, "batch_size": bs, "forms": args.forms, "cuda_graph": g} for g in (False, True)]
    for bs in args.batch_sizes:
        select = args.select_time if args.forms == "fast" else None
        fps, errors = time_variants(models, bs, device, args.rounds, args.min_run_time, select)
        for row in rows:
            key = (row["variant"], row.get("cuda_graph"))
            if row.get("batch_size") == bs:
                row.update(fps=round(fps[key], 2) if key in fps else "", error=errors.get(key, ""),
                           device=f"{device} ({device_name(device)})")
    new = not args.out.exists()
    with open(args.out, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print("\n".join(f"{r['variant']:<12} bs={r.get('batch_size', '-'):<4} graph={r.get('cuda_graph', '-')!s:<5} "
                    f"fps={r.get('fps', '')} {r.get('error', '')}" for r in rows))
    return 1 if "dense" in failed or not set(models) - {"dense"} else 0


if __name__ == "__main__":
    sys.exit(main())
