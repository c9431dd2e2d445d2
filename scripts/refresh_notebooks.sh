#!/usr/bin/env bash
# Execute the source notebooks in place with the smoke/phantom parameters nbval uses, so
# the outputs stored in notebooks/NN_*.ipynb are the ones the tests compare against.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for nb in notebooks/[0-9][0-9]_*.ipynb; do
    echo "refreshing $nb"
    MTLOCA_DATASET=phantom MTLOCA_DATA= MTLOCA_PROFILE=smoke MTLOCA_PROTOCOL=both MTLOCA_UDIAT= \
    MTLOCA_RUNS="$tmp/runs" MTLOCA_FIGURES="$tmp/figures" MTLOCA_TABLES="$tmp/tables" MPLBACKEND=Agg \
        .venv/bin/jupyter nbconvert --to notebook --execute --inplace \
        --ExecutePreprocessor.timeout=1200 --ExecutePreprocessor.kernel_name=python3 "$nb"
done
