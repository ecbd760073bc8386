#!/usr/bin/env bash
# The deadline-bounded reproduction run on one GPU: under a wall-clock deadline (default 540 s), set-up, the CUDA tests, fast adversarial training of PreAct ResNet-18 and VGG-16, the
# table rows (dense, GDWS, calibrated GDWS) under PGD-20 on all 10,000 test images, GPU speed, and WRN-28-4 if
# time remains; each step's results are written to $OUT (or --out DIR) as soon as it ends. The logic is in
# repro/ (python -m repro --help). For a machine without internet, bundle first: python scripts/bundle_offline.py
#   bash experiments/reproduce_gpu.sh [--deadline 540] [--out DIR]
#   GDWS_REPRO_SCALE=smoke bash experiments/reproduce_gpu.sh --out DIR      # the dry run: every step shrunk, on CPU
set -euo pipefail
export GDWS_REPRO_T0="${GDWS_REPRO_T0:-$(date +%s.%N)}"  # the deadline counts from here
cd "$(dirname "$0")/.."
# The Python steps are forked from the runner (repro/forked.py): its CUDA checks must not initialise the driver.
export PYTHONUNBUFFERED=1 PYTORCH_NVML_BASED_CUDA_CHECK=1
exec "${PYTHON:-python3}" -m repro "$@"
