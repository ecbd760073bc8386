#!/usr/bin/env bash
# CPU-scale PreAct ResNet-18: dense vs GDWS (see conf/experiment/cpu_resnet18.yaml). The first run trains;
# every later run loads the finished checkpoint. Rows go to results/runs.csv. Extra overrides pass through.
# At half width and 3 epochs the paper's beta (0.75) gains no MACs in any layer (spec §5), so larger betas
# and network MAC budgets are swept too.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
"$py" run.py experiment=cpu_resnet18 gdws=none "$@"
"$py" run.py -m experiment=cpu_resnet18 gdws.beta=0.75,0.1,5,20 "$@"
"$py" run.py -m experiment=cpu_resnet18 gdws.beta=null gdws.macs_ratio=2,3 "$@"
# The network budget and LEGO with the alpha weights of eq. 8 (PGD inputs, 1000 samples; cached next to the checkpoint)
"$py" run.py -m experiment=cpu_resnet18 gdws.alphas=pgd gdws.beta=null gdws.macs_ratio=1.5,2 "$@"
"$py" run.py -m experiment=cpu_resnet18 gdws.alphas=pgd gdws.beta=0.005,0.02 "$@"
