"""The run's steps, in order: each a command (run from the repository root) with its time estimate.

Phases: 1 set-up, 2 CUDA tests, 3 fast adversarial training (then the weights), 4 table rows and GPU speed,
5 WRN-28-4 if time remains. Training and rows go through ``run.py`` with one shared list of overrides per
network (so the rows find the training's checkpoint folder, ``paths.ckpt_dir``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from repro import costs
from repro.parts import Limits, MiB



@dataclass(frozen=True)
class Network:
    """A network of the run: its paper table, the table's row numbers (dense, GDWS) and the paper's beta."""

    name: str
    table: str
    paper_rows: tuple[int, int]
    beta: float


NETWORKS = (
    Network("preact_resnet18", "admm", (6, 7), 0.75),
    Network("vgg16", "admm", (1, 2), 0.5),
    Network("wrn28_4", "robnet", (4, 5), 0.005),
)
CALIBRATION = "pgd"        # the calibration set of the data-aware rows: PGD examples of the dense network
CALIBRATED_MACS_RATIO = 2  # their constraint: half the MACs


@dataclass(frozen=True)
class Scale:
    """How big the run's work is: ``full`` on one GPU, ``smoke`` (the dry run) on CPU."""

    name: str
    device: str
    overrides: tuple[str, ...]   # extra run.py overrides (scale=smoke shrinks widths and data)
    width: float
    epochs: int
    batch_size: int
    lr: float
    n_train: int                 # training images per epoch (after the held-out split and drop_last)
    n_val: int
    val_steps: int
    n_test: int
    pgd_steps: int               # the rows' PGD evaluation (2/255 steps, eps 8/255)
    eval_batch_size: int
    alpha_samples: int
    calibration_samples: int
    part_bytes: int              # weight files come back in parts of at most this many bytes
    batch_sizes: tuple[int, ...]  # GPU speed: FPS at these batch sizes
    min_run_time: float
    rounds: int
    select_time: float | None    # optimize_for_inference's seconds per candidate form (None: time the plain forms)
    cuda_tests_cap_s: float
    rates: costs.Rates
    threads: int | None          # OMP_NUM_THREADS of every step (None: the library default)


SCALES = {
    "full": Scale(
        name="full", device="cuda",
        # 15 epochs of fast AT are not the paper's 200 of PGD AT: a row labelled paper may shrink nothing
        overrides=("scale=custom",),
        # batch 512, lr 0.2 (Wong et al.: peak 0.2 at batch 128); 95 full batches of the 49,000 training images
        width=1.0, epochs=15, batch_size=512, lr=0.2, n_train=95 * 512, n_val=1000, val_steps=5,
        n_test=10_000, pgd_steps=20, eval_batch_size=1024, alpha_samples=1000, calibration_samples=1024,
        part_bytes=15 * MiB, batch_sizes=(1, 256), min_run_time=0.3, rounds=3, select_time=0.02,
        cuda_tests_cap_s=60.0, rates=costs.H100, threads=None),
    "smoke": Scale(
        name="smoke", device="cpu", overrides=("scale=smoke", "data.eval_subset=256"),
        # 1/8 width, 4 batches of 64, 256 test images under PGD-2
        width=0.125, epochs=1, batch_size=64, lr=0.2, n_train=4 * 64, n_val=64, val_steps=2,
        n_test=256, pgd_steps=2, eval_batch_size=128, alpha_samples=32, calibration_samples=64,
        # parts of 256 KiB: the 1/64-size weights (with torch.save's per-tensor overhead) come back in 2, 2 and 1
        # parts, as the full-size ones do in parts of 15 MiB, so that the same files come back
        part_bytes=MiB // 4,
        # the plain forms at batch 1 and 8: choosing the fastest forms takes ~30 s per network on a 2-core CPU
        batch_sizes=(1, 8), min_run_time=0.02, rounds=1, select_time=None,
        cuda_tests_cap_s=60.0, rates=costs.CPU_SMOKE, threads=1),
}


@dataclass
class Step:
    """One step of the run: a command, its estimate, what it needs and what the runner collects from it."""

    name: str
    phase: int
    argv: list[str]
    estimate_s: float
    gpu_bound: bool = True          # its time follows the GPU's speed (the runner rescales such estimates)
    needs: tuple[str, ...] = ()     # steps that must have succeeded first
    cap_s: float | None = None      # hard time limit of its own
    collect: str | None = None      # device | train | weights | None: what the runner reads back afterwards
    not_needed: str | None = None   # why there is nothing to do (the step counts as done)
    action: str | None = None       # preload: done inside the runner (argv empty)
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Paths:
    """Where the run reads and writes on the machine it runs on."""

    repo: Path
    work: Path      # data, checkpoints, caches, logs (not returned)
    data: Path      # holds (or will hold) cifar-10-batches-py
    kit: Path       # the CIFAR-10 rebuild kit (build.py)
    wheels: Path    # the carried wheels


def network_overrides(net: Network, scale: Scale, paths: Paths) -> list[str]:
    """run.py overrides shared by a network's training, rows and speed step (same training config, same folder)."""
    return [
        f"experiment=table_{net.table}", f"model={net.name}", "train=fgsm_rs", "trainer=gpu", f"device={scale.device}",
        f"train.epochs={scale.epochs}", f"train.lr={scale.lr}", "train.amp=true", "train.channels_last=true",
        f"train.val_attack_steps={scale.val_steps}", f"data.batch_size={scale.batch_size}",
        f"data.eval_batch_size={scale.eval_batch_size}", f"data.root={paths.data}", f"paths.root_dir={paths.work}",
        f"paths.ckpt_dir={paths.work / 'ckpt' / net.name}", f"paths.runs_csv={paths.work / 'runs.csv'}",
        "trainer.enable_progress_bar=false", "progress=false", *scale.overrides,
    ]


def row_variants(net: Network, scale: Scale) -> dict[str, list[str]]:
    """The rows of a network: dense, GDWS at the paper's beta with PGD alphas, GDWS with the calibrated refit."""
    return {
        "dense": ["gdws=none", f"paper_row={net.paper_rows[0]}"],
        "gdws": [f"gdws.beta={net.beta}", "gdws.alphas=pgd", f"gdws.alpha_samples={scale.alpha_samples}",
                 f"paper_row={net.paper_rows[1]}"],
        "calibrated": [f"gdws.macs_ratio={CALIBRATED_MACS_RATIO}", f"gdws.calibration={CALIBRATION}",
                       f"gdws.calibration_samples={scale.calibration_samples}", "gdws.refit=true"],
    }


def _network_steps(net: Network, scale: Scale, paths: Paths, py: str, phase: int) -> dict[str, Step]:
    """Training, weights, the three rows and the speed step of one network, by kind."""
    r, w, common = scale.rates, scale.width, network_overrides(net, scale, paths)
    variants = row_variants(net, scale)
    train = f"train-{net.name}"
    evaluation = (r, net.name, w, scale.n_test, scale.pgd_steps)
    row_est = {
        "dense": costs.row_s(*evaluation),
        "gdws": costs.row_s(*evaluation, alpha_samples=scale.alpha_samples, convert=True),
        "calibrated": costs.row_s(*evaluation, calibration_samples=scale.calibration_samples, convert=True),
    }
    steps = {
        "train": Step(train, phase, [py, "run.py", "stage=train", *common],
                      costs.train_s(r, net.name, w, scale.epochs, scale.n_train, scale.n_val, scale.val_steps),
                      needs=("data",), collect="train",
                      info={"network": net.name, "epochs": scale.epochs, "images_per_epoch": scale.n_train,
                            "batch_size": scale.batch_size, "ckpt_dir": str(paths.work / "ckpt" / net.name)}),
        "weights": Step(f"weights-{net.name}", phase,
                        [py, "-m", "repro.export", str(paths.work / "ckpt" / net.name), net.name,
                         str(paths.work / "weights")],
                        r.fixed_s["weights"], gpu_bound=False, needs=(train,), collect="weights",
                        info={"network": net.name, "width": w,
                              "expected_bytes": int(costs.FP16_BYTES[net.name] * w ** 2)}),
    }
    for kind, extra in variants.items():
        argv = [py, "run.py", *common, "attack=pgd20", f"attack.steps={scale.pgd_steps}", "metrics.fps=false", *extra]
        steps[kind] = Step(f"{kind}-{net.name}", phase if phase == 5 else 4, argv, row_est[kind], needs=(train,),
                           info={"network": net.name, "row": kind})
    # speed of the paper's pair only: the calibrated variant's conversion and refit would cost ~15 s more per network
    perf_variants = [[name, json.dumps(variants[name])] for name in ("dense", "gdws")]
    steps["perf"] = Step(
        f"speed-{net.name}", phase if phase == 5 else 4,
        [py, "-m", "repro.perf", "--out", str(paths.work / "speed.csv"), "--network", net.name,
         "--device", scale.device, "--common", json.dumps(common), "--batch-sizes", *map(str, scale.batch_sizes),
         "--min-run-time", str(scale.min_run_time), "--rounds", str(scale.rounds),
         *(["--select-time", str(scale.select_time)] if scale.select_time else ["--forms", "plain"]),
         *(a for v in perf_variants for a in ("--variant", *v))],
        costs.perf_s(r, len(perf_variants), len(scale.batch_sizes), scale.min_run_time, scale.rounds,
                     select_s=r.fixed_s["form-choice"] if scale.select_time else 0.0, conversions=1),
        needs=(train,), info={"network": net.name})
    return steps


def _setup_steps(scale: Scale, paths: Paths, python: str) -> list[Step]:
    """Phases 1 and 2: install the carried wheels, build CIFAR-10 from the kit, import the libraries once (the
    Python steps are forked from the runner: repro.forked), name the device, the CUDA tests."""
    from gdws.data.cifar10 import has_cifar10

    fixed = scale.rates.fixed_s
    wheels = sorted(paths.wheels.glob("*.whl")) if paths.wheels.is_dir() else []
    return [
        Step("install", 1, [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                            "--no-cache-dir", "--upgrade", "--target", str(paths.work / "site"), *map(str, wheels)],
             fixed["install"], gpu_bound=False,
             not_needed=None if wheels else f"no wheels in {paths.wheels}: the installed packages are used"),
        Step("data", 1, [python, str(paths.kit / "build.py"), str(paths.data)], fixed["data"], gpu_bound=False,
             not_needed=f"{paths.data} already holds CIFAR-10" if has_cifar10(paths.data) else None),
        Step("preload", 1, [], fixed["preload"], gpu_bound=False, action="preload"),
        Step("device", 1, [python, "-m", "repro.device", str(paths.work / "device.json")], fixed["device"],
             gpu_bound=False, collect="device"),
        Step("cuda-tests", 2, [python, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-rA",
                               "-p", "no:cacheprovider"],
             fixed["cuda-tests"], gpu_bound=False, cap_s=scale.cuda_tests_cap_s),
    ]


def build_plan(scale: Scale, paths: Paths, python: str = "python3") -> list[Step]:
    """Every step of the run, in the order it runs (the runner skips what cannot finish in time)."""
    r18, vgg, wrn = (_network_steps(n, scale, paths, python, 5 if n.name == "wrn28_4" else 3) for n in NETWORKS)
    return [
        *_setup_steps(scale, paths, python),
        r18["train"], r18["weights"], vgg["train"], vgg["weights"],
        r18["dense"], r18["gdws"], vgg["dense"], vgg["gdws"], r18["perf"], vgg["perf"],
        r18["calibrated"], vgg["calibrated"],
        *(wrn[k] for k in ("train", "weights", "dense", "gdws", "perf", "calibrated")),
    ]


def describe(steps: list[Step], scale: Scale, deadline_s: float, limits: Limits = Limits()) -> str:
    """The plan as printed before the run: per step its estimate and the cumulative time, then the assumptions."""
    lines = [f"reproduction plan: scale={scale.name}, device={scale.device}, deadline {deadline_s:.0f} s, "
             f"estimates for {scale.rates.name}", f"{'phase':>5}  {'step':<28}{'estimate':>10}{'cumulative':>12}"]
    total, per_phase = 0.0, {}
    for s in steps:
        estimate = 0.0 if s.not_needed else s.estimate_s
        total += estimate
        per_phase[s.phase] = per_phase.get(s.phase, 0.0) + estimate
        mark = f"  (nothing to do: {s.not_needed})" if s.not_needed else (
            "" if total <= deadline_s else "  (beyond the deadline: runs only if the machine is faster)")
        lines.append(f"{s.phase:>5}  {s.name:<28}{estimate:>9.0f}s{total:>11.0f}s{mark}")
    lines += [f"phase {phase}: {seconds:.0f} s" for phase, seconds in sorted(per_phase.items())]
    lines += [f"assumption: {n}" for n in scale.rates.notes]
    parts = {s.info["network"]: math.ceil(s.info["expected_bytes"] / scale.part_bytes)
             for s in steps if s.collect == "weights"}
    lines.append(f"weights: fp16 state_dicts in parts of {scale.part_bytes / MiB:.2f} MiB, expected parts {parts} "
                 f"(the output folder holds at most {limits.max_files} files: 4 are the report files)")
    return "\n".join(lines)
