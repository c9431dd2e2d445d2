# Plain runner. Every target creates or reuses .venv itself (scripts/setup_venv.sh).
PY := .venv/bin/python
export PYTHONHASHSEED := 0

.PHONY: setup reproduce test test-unit test-notebooks refresh-notebooks clean-cache

setup:
	@bash scripts/setup_venv.sh

## Reproduce the paper's artefacts (real data when MTLOCA_DATASET/MTLOCA_DATA are set,
## otherwise the built-in phantom): runs notebooks/NN_*.ipynb in order with papermill.
reproduce: setup
	@$(PY) -m mtloca_lib.reproduce

## The whole test suite: unit tests (two workers), then every notebook under nbval.
test: setup
	@bash scripts/run_tests.sh

test-unit: setup
	@$(PY) -m pytest -q -p no:cacheprovider -n 2 tests

test-notebooks: setup
	@bash scripts/run_tests.sh notebooks

## Re-execute the source notebooks in place on the smoke profile and the phantom, so the
## outputs nbval compares (cells marked NBVAL_CHECK_OUTPUT) are current.
refresh-notebooks: setup
	@bash scripts/refresh_notebooks.sh

clean-cache:
	rm -rf .cache/mtloca
