#!/usr/bin/env bash
# The VGG-16 rows of the paper's tables "admm" and "hydra" at scale=cpu (issue 20), on the CPU study's robust
# VGG-16 (width 0.5, fast AT, 12 epochs on the full training split: conf/table_scale/cpu_vgg16_network.yaml),
# loaded from its trained weights instead of retrained. Pruning phases: fast AT, 1-2 epochs of 200 batches
# (conf/prune_scale/{admm,hydra}_cpu.yaml). Evaluation: PGD-20 on the 1,017 exact test images, then AutoAttack
# on the first 300 of them for dense, ADMM 50 % and HYDRA 95 %. Every row goes to results/cpu/tables_runs.csv.
#   bash experiments/cpu_tables.sh > outputs/cpu_tables.log 2>&1
# Resumable: rerun the same command. A row already in the CSV (same table, row, scale, attack) is skipped, an
# interrupted pruning phase resumes from its latest.ckpt, a finished one is reused (checkpoints/pruned/).
# Extra overrides pass through to every command (e.g. paths.checkpoints_dir=DIR).
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
# One intra-op thread: spinning OpenMP threads stall badly on a shared 2-core CPU (cpu_vgg16.sh), and batch-1
# FPS on one thread is what the CPU study's benchmark measured.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
weights="${WEIGHTS:-$(cd .. && pwd)/shared/weights/vgg16_w0.5_fgsm_rs_e12.pt}"
common=(scale=cpu "weights.path=$weights" paths.runs_csv=results/cpu/tables_runs.csv progress=false
        trainer.enable_progress_bar=false --skip-done "$@")
failed=0
table() {  # table NAME ROWS [overrides...]: run those rows; a failure is counted and the next rows still run
    echo "=== $(date -u +%FT%TZ) table $1 rows $2 ${*:3}"
    "$py" scripts/run_table.py "$1" --rows "$2" "${common[@]}" "${@:3}" || failed=$((failed + 1))
}
# 1. The cheapest informative rows: dense, GDWS at the paper's setting, ADMM 50 %, HYDRA 95 % (PGD-20).
table admm 1,2,4
table hydra 5
# 2. GDWS on the HYDRA 95 % network, then AutoAttack (standard) on the first 300 exact test images for ADMM 50 %
#    and HYDRA 95 % (dense is in step 1's CSV already; FPS is already in the PGD-20 rows).
table hydra 6
aa=(attack=autoattack data.eval_subset=300 metrics.fps=false)
table admm 1,4 "${aa[@]}"
table hydra 5 "${aa[@]}"
# 3. The other pruning rows, the extreme first (HYDRA + GDWS reuse the pruned networks), then the table-hydra
#    copies of the dense and GDWS rows (the same network and setting as admm rows 1-2, labelled for that table).
table hydra 7
table admm 3,5
table hydra 3
table hydra 8,4
table hydra 1,2
echo "=== $(date -u +%FT%TZ) finished, $failed failed step(s)"
exit $((failed > 0))
