#!/usr/bin/env bash
# CPU-scale PreAct ResNet-18: dense vs GDWS (see conf/experiment/cpu_resnet18.yaml). The first run trains;
# every later run reuses the finished checkpoint. Rows go to the committed results/cpu/runs.csv.
# At half width and 3 epochs the paper's beta (0.75) gains no MACs in any layer (spec §5), so larger betas
# and network MAC budgets are swept too. Extra overrides pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
out=paths.runs_csv=results/cpu/runs.csv
"$py" run.py experiment=cpu_resnet18 gdws=none "$out" "$@"
"$py" run.py -m experiment=cpu_resnet18 gdws.beta=0.75,0.1,5,20 "$out" "$@"
"$py" run.py -m experiment=cpu_resnet18 gdws.macs_ratio=2,3 "$out" "$@"
# The network budget and LEGO with the alpha weights of eq. 8 (PGD inputs, 1000 samples; cached under cache/)
"$py" run.py -m experiment=cpu_resnet18 gdws.alphas=pgd gdws.macs_ratio=1.5,2 "$out" "$@"
"$py" run.py -m experiment=cpu_resnet18 gdws.alphas=pgd gdws.beta=0.005,0.02 "$out" "$@"
