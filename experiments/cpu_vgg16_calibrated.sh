#!/usr/bin/env bash
# Data-aware GDWS on the CPU study's robust VGG-16 (width 0.5, fast AT, 12 epochs; ../shared/weights), no
# retraining (issue 21, study 2): the weight-only MAC budget against whitened + refit + Fisher with clean, PGD
# and mixed calibration sets (1,024 training images) at MAC ratios 1.5 / 2 / 3. PGD-20 on the 1,017 exact test
# images and the batch-1 CPU FPS ratio against the dense network in every row; AutoAttack on the first 300
# images for the rows marked aa (implicit form: the same function, attacked faster).
# The dense row and the paper's GDWS row are those of experiments/cpu_tables.sh (results/cpu/tables_runs.csv).
#   bash experiments/cpu_vgg16_calibrated.sh > outputs/cpu_vgg16_calibrated.log 2>&1
# SCALE=cpu_fullwidth WEIGHTS=<full-width file> CSV=... runs the same rows on the full-width network
# (experiments/fullwidth_vgg16.sh).
# Resumable: a row already in the CSV (same constraint, calibration, fisher and attack) is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # as experiments/cpu_tables.sh: batch-1 FPS on one thread
weights="${WEIGHTS:-$(cd .. && pwd)/shared/weights/vgg16_w0.5_fgsm_rs_e12.pt}"
csv="${CSV:-results/cpu/calibrated_runs.csv}"
base=(experiment=table_admm "scale=${SCALE:-cpu}" model=vgg16 train=fgsm_rs attack=pgd20 "weights.path=$weights"
      "paths.runs_csv=$csv" gdws.alphas=none progress=false trainer.enable_progress_bar=false)
failed=0
row() {  # row BUDGET CALIBRATION [overrides...]: one run.py row unless the CSV has it already
  local budget=$1 calib=$2; shift 2
  case "$budget" in *=*) ;; *) budget="macs_ratio=$budget" ;; esac   # a bare number is a MAC ratio
  local attack=pgd20 rounds=0 arg
  for arg in "$@"; do
    case "$arg" in attack=autoattack) attack=autoattack ;; gdws.refit_rounds=*) rounds=${arg#*=} ;; esac
  done
  if [ -f "$csv" ] && "$py" - "$csv" "$budget" "$calib" "$attack" "$rounds" <<'EOF'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1])
rounds = d["gdws_refit_rounds"].fillna(0) if "gdws_refit_rounds" in d else 0
hit = d[(d.gdws_constraint == sys.argv[2]) & (d.gdws_calibration.fillna("none") == sys.argv[3])
        & d.attack.str.startswith(sys.argv[4].replace("pgd20", "pgd20-")) & (rounds == int(sys.argv[5]))]
sys.exit(0 if len(hit) else 1)
EOF
  then echo "=== done already: $budget $calib $attack rounds $rounds"; return; fi
  echo "=== $(date -u +%FT%TZ) $budget calibration=$calib $*"
  "$py" run.py "${base[@]}" "gdws.$budget" "gdws.calibration=$calib" "$@" || failed=$((failed + 1))
}
fisher=(gdws.fisher=true)
aa=(attack=autoattack data.eval_subset=300 metrics.fps=false gdws.implicit=true)
# The rows, as BUDGET:CALIBRATION[:aa][:rN]: BUDGET a MAC ratio (2) or speedup=R (measured batch-1 latency on
# this CPU <= dense / R); calibration none: the weight-only budget; aa: AutoAttack on the first 300 exact test
# images; rN: N rounds of the alternating refit (gdws.refit_rounds=N).
# Arguments replace the default list, e.g. `... cpu_vgg16_calibrated.sh 3:mixed speedup=1.5:mixed 3:mixed:aa:r2`.
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(2:none 2:mixed 3:mixed 2:clean 2:pgd 1.5:mixed 1.5:none 3:none 2:mixed:aa)
for spec in "${rows[@]}"; do  # every spec checked before the first row runs
  IFS=: read -r budget calib what <<<"$spec"
  for flag in ${what//:/ }; do
    [[ "$flag" =~ ^(aa|r[0-9]+)$ ]] || { echo "unknown row flag '$flag' in '$spec' (aa or rN)" >&2; exit 2; }
  done
done
for spec in "${rows[@]}"; do
  IFS=: read -r budget calib what <<<"$spec"
  extra=()
  [ "$calib" = none ] || extra+=("${fisher[@]}")
  for flag in ${what//:/ }; do
    case "$flag" in
      aa) extra+=("${aa[@]}") ;;
      r*) extra+=("gdws.refit_rounds=${flag#r}") ;;
    esac
  done
  row "$budget" "$calib" "${extra[@]}"
done
echo "=== $(date -u +%FT%TZ) finished, $failed failed row(s)"
exit $((failed > 0))
