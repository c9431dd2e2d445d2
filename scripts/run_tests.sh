#!/usr/bin/env bash
# The test suite, in parts (all of them when no part is named):
#   unit       unit tests on two workers, except the workflow's and SLURM's
#   workflow   tests/test_workflow.py alone (Snakemake runs of its own; no workers)
#   slurm      tests/test_slurm.py: starts a one-node SLURM on this machine, stops it after
#   notebooks  every notebook executed by nbval on the smoke profile and the phantom (in a
#              temporary run/figure/table folder, so nothing in the repository changes)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(unit workflow slurm notebooks)
status=0
# pytest's exit 5 (no test collected) is no failure of a part
run_pytest() { "$PY" -m pytest -q -p no:cacheprovider "$@" || { rc=$?; [ $rc -eq 5 ] || status=$rc; }; }
for part in "${parts[@]}"; do
    case "$part" in
        unit)
            run_pytest -n 2 tests --ignore=tests/test_workflow.py --ignore=tests/test_slurm.py ;;
        workflow)
            run_pytest -p no:xdist tests/test_workflow.py ;;
        slurm)
            run_pytest -p no:xdist -rs tests/test_slurm.py ;;
        notebooks)
            shopt -s nullglob
            books=(notebooks/[0-9][0-9]_*.ipynb)
            if [ ${#books[@]} -gt 0 ]; then
                tmp=$(mktemp -d)
                MTLOCA_DATASET=phantom MTLOCA_DATA= MTLOCA_PROFILE=smoke MTLOCA_PROTOCOL=both MTLOCA_UDIAT= \
                MTLOCA_RUNS="$tmp/runs" MTLOCA_FIGURES="$tmp/figures" MTLOCA_TABLES="$tmp/tables" \
                MTLOCA_CACHE="${MTLOCA_CACHE:-$PWD/.cache/mtloca}" MPLBACKEND=Agg \
                    run_pytest -p no:xdist --nbval-lax --nbval-current-env "${books[@]}"
                rm -rf "$tmp"
            fi ;;
        *) echo "run_tests: unknown part $part (unit, workflow, slurm, notebooks)" >&2; exit 2 ;;
    esac
done
exit $status
