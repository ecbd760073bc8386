#!/usr/bin/env bash
# CPU-scale VGG-16: dense vs GDWS (see conf/experiment/cpu_vgg16.yaml). The first run trains and every
# later run loads the finished checkpoint. Rows go to results/runs.csv. Extra overrides pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
"$py" run.py experiment=cpu_vgg16 gdws=none "$@"
"$py" run.py -m experiment=cpu_vgg16 gdws.beta=0.5,0.05 "$@"
"$py" run.py -m experiment=cpu_vgg16 gdws.beta=null gdws.macs_ratio=2,3 "$@"
