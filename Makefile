# Plain runner. Every target creates or reuses .venv itself (scripts/setup_venv.sh).
PY := .venv/bin/python
export PYTHONHASHSEED := 0
# jobs' threads at a time for the workflow: every core of this machine
CORES ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: setup reproduce reproduce-dry-run test test-unit test-notebooks test-slurm refresh-notebooks clean-cache

setup:
	@bash scripts/setup_venv.sh

## Reproduce the paper's artefacts with the Snakemake workflow (workflow/Snakefile) on this machine:
## prints what it will train and a time estimate, then `snakemake --cores $(CORES)`. Real data when
## MTLOCA_DATASET/MTLOCA_DATA are set, otherwise the built-in phantom; more with ARGS, e.g.
## make reproduce ARGS="--configfile workflow/configs/busi.yaml".
reproduce: setup
	@$(PY) -m mtloca_lib.reproduce --cores $(CORES) $(ARGS)

reproduce-dry-run: setup
	@$(PY) -m mtloca_lib.reproduce --cores $(CORES) --dry-run $(ARGS)

## The whole test suite: unit tests (two workers; the workflow's and SLURM's tests alone after
## them), then every notebook under nbval.
test: setup
	@bash scripts/run_tests.sh

test-unit: setup
	@bash scripts/run_tests.sh unit

test-notebooks: setup
	@bash scripts/run_tests.sh notebooks

## The workflow on a one-node SLURM on this machine (root; installs slurm-wlm and munge if missing).
test-slurm: setup
	@bash scripts/run_tests.sh slurm

## Re-execute the source notebooks in place on the smoke profile and the phantom, so the
## outputs nbval compares (cells marked NBVAL_CHECK_OUTPUT) are current.
refresh-notebooks: setup
	@bash scripts/refresh_notebooks.sh

clean-cache:
	rm -rf .cache/mtloca
