#!/usr/bin/env bash
# One probe of the training study (docs/training.md): MTL-OCA, cpu profile, BUSI, grouped
# protocol, fold 0 only, 20 % of the training fold held out for the learning curve,
# one torch thread (two probes share the 2-core machine), plus the probe's overrides.
#   scripts/study_probe.sh NAME [--set FIELD=VALUE ...]
# Output: runs/busi/study/NAME/ (its log in runs/logs/study-NAME.log). Run from a git worktree
# at a fixed commit so edits never reach a running probe.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
data=${MTLOCA_DATA:-$(cd .. && pwd)/shared/data/BUSI/Dataset_BUSI_with_GT}
[ -d "$data" ] || data=../shared/data/BUSI/Dataset_BUSI_with_GT
mkdir -p runs/logs
exec .venv/bin/python -m mtloca_lib train --model "${MODEL:-mtl_oca}" --profile cpu --dataset busi --data "$data" \
    --protocol grouped --run-dir "runs/busi/study/$name" \
    --set 'folds=[0]' --set num_threads=1 --set val_fraction=0.2 --set epochs="${EPOCHS:-20}" "$@" \
    > "runs/logs/study-$name.log" 2>&1
