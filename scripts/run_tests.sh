#!/usr/bin/env bash
# The test suite: unit tests on two workers, then every notebook executed by nbval on the
# smoke profile and the phantom (in a temporary run/figure/table folder, so nothing in the
# repository changes). Pass "notebooks" to run only the notebook part.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
status=0
if [ "${1:-all}" != "notebooks" ]; then
    "$PY" -m pytest -q -p no:cacheprovider -n 2 tests || status=$?
fi
shopt -s nullglob
books=(notebooks/[0-9][0-9]_*.ipynb)
if [ ${#books[@]} -gt 0 ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    MTLOCA_DATASET=phantom MTLOCA_DATA= MTLOCA_PROFILE=smoke MTLOCA_PROTOCOL=both MTLOCA_UDIAT= \
    MTLOCA_RUNS="$tmp/runs" MTLOCA_FIGURES="$tmp/figures" MTLOCA_TABLES="$tmp/tables" \
    MTLOCA_CACHE="${MTLOCA_CACHE:-$PWD/.cache/mtloca}" MPLBACKEND=Agg \
        "$PY" -m pytest -q -p no:cacheprovider -p no:xdist --nbval-lax --nbval-current-env \
        "${books[@]}" || status=$?
fi
exit $status
