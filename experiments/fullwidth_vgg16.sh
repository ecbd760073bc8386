#!/usr/bin/env bash
# The paper's tables "admm" and "hydra" at the paper's width (issue 28): every row on the project's full-width
# robust VGG-16 (../shared/weights/vgg16_w1.0_fgsm_rs_e10.pt: 10 epochs of fast AT on this CPU, loaded, not
# retrained; conf/scale/cpu_fullwidth.yaml), rows to results/fullwidth/runs.csv. PGD-20 on the 1,017 exact test
# images; batch-1 FPS on one thread beside the dense network in every row (PyTorch, fastest exact form).
#   bash experiments/fullwidth_vgg16.sh > outputs/fullwidth_vgg16.log 2>&1
# Resumable: rerun the same command; a row already in the CSV is skipped. Arguments replace the default queue:
#   STEP = table:ROWS (scripts/run_table.py NAME --rows ROWS) | BUDGET:CALIBRATION[:aa][:rN]
#   (experiments/cpu_vgg16_calibrated.sh rows, e.g. 3:mixed = data-aware GDWS at 3x fewer MACs, mixed
#   calibration, Fisher weighting).
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export SCALE=cpu_fullwidth
export WEIGHTS="${WEIGHTS:-$(cd .. && pwd)/shared/weights/vgg16_w1.0_fgsm_rs_e10.pt}"
export CSV="${CSV:-results/fullwidth/runs.csv}"
common=(scale=$SCALE "weights.path=$WEIGHTS" "paths.runs_csv=$CSV" progress=false
        trainer.enable_progress_bar=false --skip-done)
# Accuracy first, cheapest first: dense, data-aware 3x and 2x, the paper's GDWS row, 4x and 1.5x, then the
# pruning baselines (each a shrunk ADMM / HYDRA phase, about 4x the half-width study's time).
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(admm:1 3:mixed 2:mixed admm:2 4:mixed 1.5:mixed admm:4 hydra:5 hydra:6 admm:3,5
                                  hydra:7 hydra:3 hydra:4,8 hydra:1,2)
failed=0
for step in "${steps[@]}"; do
  case "$step" in
    admm:*|hydra:*)
      echo "=== $(date -u +%FT%TZ) table ${step%%:*} rows ${step#*:}"
      "$py" scripts/run_table.py "${step%%:*}" --rows "${step#*:}" "${common[@]}" || failed=$((failed + 1)) ;;
    *) bash experiments/cpu_vgg16_calibrated.sh "$step" || failed=$((failed + 1)) ;;
  esac
done
echo "=== $(date -u +%FT%TZ) finished, $failed failed step(s)"
exit $((failed > 0))
