#!/usr/bin/env bash
# CPU-scale VGG-16 trained on the full training split (conf/experiment/cpu_vgg16.yaml), then dense vs GDWS
# on the 1,017 exact test images. Rows go to the committed results/cpu/runs.csv; spectra and FPS beside it.
# Extra overrides pass through (e.g. paths.checkpoints_dir=DIR to keep the long training outside the clone).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
out=paths.runs_csv=results/cpu/runs.csv
# 1. Train: about 3 min per epoch on 2 quiet cores, far longer on a shared machine. Resumable: rerun after an
#    interruption. One intra-op thread, because spinning OpenMP threads stall badly on a shared CPU.
OMP_NUM_THREADS=1 "$py" run.py experiment=cpu_vgg16 stage=train "$@"
# 2. Dense, then GDWS, each row timed beside the dense network (metrics.fps_vs_dense): LEGO without alphas
#    over beta (1.05x to about 3.5x fewer MACs on the trained network), network MAC budgets with PGD alphas
#    (eq. 8; 1000 samples, cached under cache/) and, to separate allocation from weighting, without alphas.
"$py" run.py experiment=cpu_vgg16 gdws=none "$out" "$@"
"$py" run.py -m experiment=cpu_vgg16 gdws.alphas=none gdws.beta=1,3,5,10,20 "$out" "$@"
"$py" run.py -m experiment=cpu_vgg16 gdws.macs_ratio=1.1,1.25,1.5,2,3 "$out" "$@"
"$py" run.py -m experiment=cpu_vgg16 gdws.alphas=none gdws.macs_ratio=1.5,2,3 "$out" "$@"
