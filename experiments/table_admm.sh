#!/usr/bin/env bash
# Paper table "admm" (see conf/experiment/table_admm.yaml for the rows it covers).
# Extra Hydra overrides are passed through, e.g.  bash experiments/table_admm.sh trainer=gpu
#                                                 bash experiments/table_admm.sh hydra/launcher=slurm
# Results: one row per job in results/runs.csv; then  python scripts/make_tables.py
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" run.py -m experiment=table_admm "$@"
