"""Time estimates of the run's steps: what each step computes, divided by what the machine is assumed to do.

Work is counted in forward passes of one image (F = 2 x the network's MACs, counted on CPU with
``gdws.metrics.count_macs`` at full width). A backward pass costs 2F, one to the input only (what an attack
needs) costs F. So one fast-AT (FGSM-RS) training image costs 5F, one PGD-k attacked and scored test image
(2 + 2k)F, and one image of the PGD-10 alphas or calibration set 22F.
"""
from __future__ import annotations

from dataclasses import dataclass

# Full-width forward MACs per 32x32 image (gdws.metrics.count_macs on CPU; they scale with width squared): the
# networks of the paper's tables (resnet20_w40: model=resnet20 model.base_width=40).
GMACS = {"preact_resnet18": 0.5554, "vgg16": 0.3132, "wrn28_4": 0.8456, "vgg16_hydra": 0.3138,
         "mobilenet_v1": 0.0464, "mobilenet_v2": 0.0880, "resnet18_dws": 0.0730, "resnet20_w40": 0.2518,
         "robnet_free": 0.7802, "preact_resnet50": 1.2978}
# fp16 weight bytes at full width (float parameters and buffers x 2; also scale with width squared).
FP16_BYTES = {"preact_resnet18": 22_359_956, "vgg16": 29_473_428, "wrn28_4": 11_712_500}

FGSM_RS_F = 5       # attack: forward + input backward; training: forward + full backward
PGD10_F = 22        # alphas and calibration sets: 10 steps of forward + input backward, plus 2 forwards


def pgd_f(steps: int) -> int:
    """Forward passes per image of a PGD-``steps`` evaluation (clean and adversarial scoring included)."""
    return 2 + 2 * steps


@dataclass(frozen=True)
class Rates:
    """What the estimates assume about a machine (the sources are in ``notes``)."""

    name: str
    train_flops: float     # effective FLOP/s of mixed-precision training work (counted in F as above)
    eval_flops: float      # effective FLOP/s of the fp32 attack and evaluation work
    start_s: float         # one step forked from the runner: device context, config, CIFAR-10 read
    warmup_s: float        # first training epoch's extra (cudnn autotuning, allocator)
    convert_s: float       # one GDWS conversion (per-layer SVDs and allocation)
    refit_s: float         # the calibrated refit's layer-by-layer passes and solves
    fixed_s: dict          # set-up and other steps whose time does not follow the network's size
    notes: tuple[str, ...]


# Wong, Rice & Kolter (ICLR 2020, "Fast is better than free"): PreAct ResNet-18, FGSM-RS, 15 epochs of
# CIFAR-10 in 12 minutes on one RTX 2080 Ti with mixed precision, i.e. 15 * 50k * 5F / 720 s = 5.8 TFLOP/s
# effective. Assumed: an H100 with bf16, channels_last and GPU-resident data does 6x that (public ResNet
# training throughputs put an A100 at about 3x a 2080 Ti and an H100 at about 2x an A100), and fp32 (TF32)
# attack/evaluation work runs 1.5x slower per FLOP than bf16 training.
H100 = Rates(
    name="H100 (estimated)",
    train_flops=5.8e12 * 6,
    eval_flops=5.8e12 * 6 / 1.5,
    start_s=3.0, warmup_s=5.0, convert_s=5.0, refit_s=10.0,
    fixed_s={"install": 5.0, "data": 15.0, "preload": 10.0, "device": 3.0, "cuda-tests": 30.0, "weights": 2.0,
             "form-choice": 3.0},
    notes=(
        "F = one forward pass of one image = 2 x MACs (count_macs on CPU: PreAct ResNet-18 0.555 G, VGG-16 "
        "0.313 G, WRN-28-4 0.846 G); fast-AT image = 5F, PGD-20 test image = 42F, PGD-10 alpha/calibration image = 22F",
        "published: Wong et al. 2020 trained PreAct ResNet-18 with FGSM-RS for 15 epochs in 12 min on an RTX 2080 Ti "
        "(mixed precision) = 5.8 TFLOP/s effective",
        "assumed: H100 bf16 + channels_last + GPU-resident data = 6x that (35 TFLOP/s effective: ~7.8 s per "
        "PreAct ResNet-18 epoch); fp32/TF32 attacks 1.5x slower per FLOP (23 TFLOP/s)",
        "fixed: 10 s to import the libraries once (24 s of CPU measured on this 2-core machine; a faster host), 3 s "
        "per forked step (CUDA context, config, CIFAR-10 read), 5 s first-epoch autotuning, 5 s per GDWS conversion, "
        "10 s per calibrated refit, 3 s per optimize_for_inference (~80 timed candidates; 8 s each on this CPU); "
        "CIFAR-10 build from the kit 15 s (its README)",
        "the runner rescales later estimates by the measured/estimated time of the GPU steps already run",
    ),
)

# The dry run on this project's 2-core CPU (one intra-op thread per process), measured at smoke scale.
CPU_SMOKE = Rates(
    name="CPU smoke (measured)",
    train_flops=4e9, eval_flops=6e9,
    start_s=2.0, warmup_s=0.0, convert_s=1.0, refit_s=2.0,
    fixed_s={"install": 3.0, "data": 15.0, "preload": 25.0, "device": 2.0, "cuda-tests": 8.0, "weights": 1.0,
             "form-choice": 8.0},
    notes=("measured on the 2-core development CPU at smoke scale (1/8 width, one thread per step)",),
)


def flop(network: str, width: float) -> float:
    """FLOPs of one forward pass of one image through ``network`` at ``width``."""
    return 2e9 * GMACS[network] * width ** 2


def train_s(rates: Rates, network: str, width: float, epochs: int, n_train: int, n_val: int, val_steps: int) -> float:
    """One fast-AT training process: start-up, warm-up, and per epoch the training images and the PGD validation."""
    f = flop(network, width)
    epoch = n_train * FGSM_RS_F * f / rates.train_flops + n_val * pgd_f(val_steps) * f / rates.train_flops
    return rates.start_s + rates.warmup_s + epochs * epoch


def row_s(rates: Rates, network: str, width: float, n_test: int, pgd_steps: int, alpha_samples: int = 0,
          calibration_samples: int = 0, convert: bool = False) -> float:
    """One run.py row: start-up, optional alphas / calibration set and conversion, the PGD evaluation."""
    f = flop(network, width)
    work = n_test * pgd_f(pgd_steps) + (alpha_samples + calibration_samples) * PGD10_F
    extra = (rates.convert_s if convert else 0.0) + (rates.refit_s if calibration_samples else 0.0)
    return rates.start_s + extra + work * f / rates.eval_flops


def perf_s(rates: Rates, variants: int, batch_sizes: int, min_run_time: float, rounds: int, select_s: float,
           conversions: float) -> float:
    """One speed process: start-up, conversions, and per variant and batch size the form choice and the timing
    (eager and CUDA graph, ``rounds`` interleaved rounds of ``min_run_time``)."""
    timing = variants * batch_sizes * (select_s + 2 * rounds * min_run_time)
    return rates.start_s + conversions * rates.convert_s + timing
