# Plain runner. Every target creates or reuses .venv itself (scripts/setup_venv.sh).
PY := .venv/bin/python
export PYTHONHASHSEED := 0

.PHONY: setup reproduce test clean-cache

setup:
	@bash scripts/setup_venv.sh

## Reproduce the paper's artefacts (real BUSI when MTLOCA_DATA/MTLOCA_DATASET are set,
## otherwise the built-in phantom) into figures/ and runs/.
reproduce: setup
	@$(PY) -m mtloca_lib.reproduce

## The whole test suite.
test: setup
	@$(PY) -m pytest -q -p no:cacheprovider tests

clean-cache:
	rm -rf .cache/mtloca
