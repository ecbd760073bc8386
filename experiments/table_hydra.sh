#!/usr/bin/env bash
# Paper table "hydra" (see conf/experiment/table_hydra.yaml for the rows it covers).
# Extra Hydra overrides are passed through, e.g.  bash experiments/table_hydra.sh trainer=gpu
#                                                 bash experiments/table_hydra.sh hydra/launcher=slurm
# Results: one row per job in results/runs.csv; then  python scripts/make_tables.py
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" run.py -m experiment=table_hydra "$@"
