#!/usr/bin/env bash
# CPU-scale PreAct ResNet-18: dense vs GDWS (see conf/experiment/cpu_resnet18.yaml). The first run trains;
# every later run loads the finished checkpoint. Rows go to results/runs.csv. Extra overrides pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
"$py" run.py experiment=cpu_resnet18 gdws=none "$@"
"$py" run.py -m experiment=cpu_resnet18 gdws.beta=0.75,0.1 "$@"
"$py" run.py -m experiment=cpu_resnet18 gdws.beta=null gdws.macs_ratio=2,3 "$@"
