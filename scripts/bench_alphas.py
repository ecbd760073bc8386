"""Benchmark: batched `compute_alphas` vs the straightforward per-sample, per-class autograd loop (eq. 8).

    .venv/bin/python scripts/bench_alphas.py [--n 64] [--n-loop 4] [--batch-size 32] [--full]

Model: VGG-16 (gdws.models.create_model("vgg16"): 13 conv3x3+BN+ReLU, width 1.0) on 32x32 inputs, random weights
(timing does not depend on the weights), CPU. Both methods get one untimed warm-up call. The batched method is timed on
--n samples, the loop on --n-loop samples (it is slow), interleaved in --n-loop rounds; times per sample are compared.
The time for 1000 samples is projected from the per-sample times, or measured with --full.
"""
from __future__ import annotations

import argparse
import time

import torch

from gdws.core import compute_alphas, pgd_attack
from gdws.core.alphas_reference import compute_alphas_loop
from gdws.models import create_model


def _timed(fn, cpu: list[float] | None = None) -> float:
    """Wall seconds of fn(); its process CPU seconds are appended to `cpu` (less sensitive to other processes)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=128, help="samples for the batched method")
    parser.add_argument("--n-loop", type=int, default=4, help="samples for the loop")
    parser.add_argument("--batch-size", type=int, default=32, help="compute_alphas chunk size")
    parser.add_argument("--full", action="store_true", help="measure 1000 samples instead of projecting")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = create_model("vgg16", num_classes=10, width=1.0).eval()
    n_total = 1000 if args.full else args.n
    images = torch.rand(n_total, 3, 32, 32)
    labels = torch.randint(0, 10, (n_total,))
    layers = list(compute_alphas(model, images[:2], attack=None))  # warm-up; the layers convert() would convert
    compute_alphas_loop(model, images[:1], layers)  # warm-up
    print(f"model: vgg16 (gdws.models.create_model), {len(layers)} target conv layers, 32x32 input, device=cpu, "
          f"torch threads={torch.get_num_threads()}, batch_size={args.batch_size}")

    # interleaved rounds (one loop sample, then n / n_loop batched samples) so that load from other processes
    # hits both methods alike; the per-round minimum estimates the quiet-machine time
    per = args.n // args.n_loop
    rounds_batch, rounds_loop, cpu_batch, cpu_loop = [], [], [], []
    for r in range(args.n_loop):
        sample, chunk = images[r:r + 1], images[r * per:(r + 1) * per]
        rounds_loop.append(_timed(lambda: compute_alphas_loop(model, sample, layers), cpu_loop))
        rounds_batch.append(_timed(lambda: compute_alphas(model, chunk, attack=None, batch_size=args.batch_size),
                                   cpu_batch))
    t_batch, t_loop = sum(rounds_batch), sum(rounds_loop)
    n_batch = per * args.n_loop
    per_batch, per_loop = t_batch / n_batch, t_loop / args.n_loop
    print(f"batched compute_alphas (attack=None): N={n_batch} samples in {t_batch:.1f} s -> {per_batch:.3f} s/sample")
    print(f"per-sample per-class autograd loop:   N={args.n_loop} samples in {t_loop:.1f} s -> {per_loop:.3f} s/sample")
    best_batch, best_loop = min(rounds_batch) / per, min(rounds_loop)
    cpu_b, cpu_l = sum(cpu_batch) / n_batch, sum(cpu_loop) / args.n_loop
    print(f"speed-up (per sample, wall): {per_loop / per_batch:.1f}x  (target >= 20x)")
    print(f"speed-up (fastest round of each, wall): {best_loop / best_batch:.1f}x  "
          f"(loop {best_loop:.3f} s/sample, batched {best_batch:.3f} s/sample)")
    print(f"speed-up (process CPU time): {cpu_l / cpu_b:.1f}x  (loop {cpu_l:.3f}, batched {cpu_b:.3f} CPU-s/sample)")

    n_pgd = min(args.n, 64)
    t_pgd = _timed(lambda: pgd_attack(model, images[:n_pgd], labels[:n_pgd], steps=10, batch_size=args.batch_size))
    per_pgd = t_pgd / n_pgd
    print(f"PGD-10 inputs (pgd_attack): N={n_pgd} samples in {t_pgd:.1f} s -> {per_pgd:.3f} s/sample")
    if args.full:
        clean = _timed(lambda: compute_alphas(model, images, attack=None, batch_size=args.batch_size))
        adv = _timed(lambda: compute_alphas(model, images, labels, attack="pgd", batch_size=args.batch_size))
        how = "measured"
    else:
        clean, adv, how = 1000 * per_batch, 1000 * (per_batch + per_pgd), f"projected from N={n_batch}"
    print(f"1000 VGG-16 samples, attack=None: {clean:.0f} s ({how}; target < 120 s)")
    print(f"1000 VGG-16 samples, attack='pgd' (PGD-10): {adv:.0f} s ({how})")


if __name__ == "__main__":
    main()
