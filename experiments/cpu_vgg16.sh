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
# 2. Dense, then GDWS: LEGO without alphas at several beta (on the 5-epoch snapshot beta 3 gave 1.22x fewer
#    MACs), and network MAC budgets with PGD alphas (eq. 8; 1000 samples, cached under cache/).
"$py" run.py experiment=cpu_vgg16 gdws=none "$out" "$@"
"$py" run.py -m experiment=cpu_vgg16 gdws.alphas=none gdws.beta=1,3,10 "$out" "$@"
"$py" run.py -m experiment=cpu_vgg16 gdws.macs_ratio=1.1,1.25,1.5,2,3 "$out" "$@"
