"""Benchmark: training images/s of PGD-10 adversarial training, DataLoader path vs device-resident path.

Both paths feed the same model, loss and optimizer (``gdws.train.PGDTraining.training_step``, then
backward and an SGD step) for the same number of steps; only ``data.resident`` differs. The paths take turns
step by step, so a busy machine slows both alike, and each step is timed from fetching its batch to the end
of the optimizer step (device synchronised). Reported: batch size / fastest step time after warm-up (the
least disturbed sample: other processes only ever add time; the median is shown too), and
the input pipeline's own rate (augmented batches delivered on the device, no training).

    .venv/bin/python scripts/bench_train.py                          # CUDA when present, else CPU
    .venv/bin/python scripts/bench_train.py --batch-size 32 --steps 6   # a quicker CPU run
    .venv/bin/python scripts/bench_train.py --model resnet20 --steps 50 --amp --channels-last
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

from gdws.data import CIFAR10DataModule, SyntheticDataModule
from gdws.data.base import ImageDataModule
from gdws.data.cifar10 import FOLDER
from gdws.models import create_model
from gdws.train import PGDTraining


def make_data(resident: bool, args: argparse.Namespace, device: torch.device) -> ImageDataModule:
    """The real CIFAR-10 when ``--data-dir`` has it, else synthetic images; on ``device`` when resident."""
    kw = dict(batch_size=args.batch_size, val_size=0, resident=resident, seed=0,
              num_workers=0 if resident else args.num_workers)
    if os.path.isdir(os.path.join(args.data_dir, FOLDER)):
        dm = CIFAR10DataModule(root=args.data_dir, **kw)
    else:
        print(f"(no {FOLDER} under {args.data_dir}: using synthetic images)")
        dm = SyntheticDataModule(num_train=args.batch_size * max(args.steps + args.warmup + 1, 22), num_test=64, **kw)
    dm.device = device
    dm.setup("fit")
    return dm


def data_rate(dm: ImageDataModule, batch_size: int, device: torch.device, batches: int = 20) -> float:
    """Images/s of the input pipeline alone: augmented training batches delivered on ``device``."""
    it = iter(dm.train_dataloader())
    next(it)  # start-up (workers, first copy) is not timed
    sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    sync(device)
    return batches * batch_size / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    """Wait for queued device work (so wall-clock times are real)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    """Time both paths in alternation and print images/s side by side with the ratio."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vgg16")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed training steps per path")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per path first")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default 0 on CPU, 4 on CUDA)")
    p.add_argument("--data-dir", default=os.environ.get("GDWS_DATA", "data"))
    p.add_argument("--amp", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.num_workers is None:
        args.num_workers = 4 if device.type == "cuda" else 0
    warnings.filterwarnings("ignore")  # e.g. self.log() without a Trainer: nothing to log here

    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, width=args.width, normalize="cifar10")
    module = PGDTraining(model, steps=10, amp=args.amp, channels_last=args.channels_last)
    module.setup("fit")
    module.to(device).train()
    opt = module.configure_optimizers()["optimizer"]

    modules = {name: make_data(name == "resident", args, device) for name in ("dataloader", "resident")}
    feed = {name: data_rate(dm, args.batch_size, device) for name, dm in modules.items()}
    batches = {name: iter(dm.train_dataloader()) for name, dm in modules.items()}
    times: dict[str, list[float]] = {name: [] for name in batches}
    for step in range(args.warmup + args.steps):
        for name, it in batches.items():
            sync(device)
            t0 = time.perf_counter()
            x, y = next(it)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = module.training_step((x, y), step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync(device)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - t0)

    name_dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"PGD-10 adversarial training, {args.model} (width {args.width}), batch {args.batch_size}, "
          f"{args.steps} timed steps per path after {args.warmup} warm-up (paths alternate), amp={args.amp}, "
          f"channels_last={args.channels_last}, DataLoader workers={args.num_workers}, device: {name_dev}")
    ips = {name: args.batch_size / min(t) for name, t in times.items()}
    print(f"{'path':<12}{'images/s':>10}{'median s/step':>16}{'min s/step':>12}{'data only, images/s':>22}")
    for name, t in times.items():
        print(f"{name:<12}{ips[name]:>10.1f}{statistics.median(t):>16.3f}{min(t):>12.3f}{feed[name]:>22.0f}")
    print(f"resident / dataloader = {ips['resident'] / ips['dataloader']:.3f}")


if __name__ == "__main__":
    main()
