#!/usr/bin/env bash
# Create or reuse the project's virtual environment in .venv and install the
# package with its notebook and test extras. Reinstalls only when pyproject.toml
# changed since the last successful install (a stamp file records its hash).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import sys; sys.exit(sys.version_info < (3, 11))"; then
    echo "[setup] $PY is Python $("$PY" -c 'import sys; print(sys.version.split()[0])'); the workflow (Snakemake 9) needs 3.11 or newer: set PYTHON=python3.11" >&2
    exit 1
fi
VENV=${MTLOCA_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment in $VENV"
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.mtloca-installed"
want=$(sha256sum pyproject.toml scripts/setup_venv.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "[setup] reusing $VENV (dependencies up to date)"
    exit 0
fi
echo "[setup] installing dependencies into $VENV (first time: a few minutes)"
"$VENV/bin/python" -m pip install -q --upgrade pip
# The CPU build of torch first: pip then treats "torch>=2.2" as satisfied and
# does not pull a multi-GB CUDA build. Skip if a torch is already present.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q "torch==${MTLOCA_TORCH_VERSION:-2.13.0}"
fi
"$VENV/bin/python" -m pip install -q -e ".[notebooks,test,workflow]"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "$want" > "$stamp"
echo "[setup] done"
