#!/usr/bin/env bash
# A second, small virtual environment (.venv-tf5) with the other major version of transformers (5.x, the
# newest the registry offers) and only what the model tests import: torch, transformers, tqdm, pytest and
# boe-eval itself (installed without its dependencies, so lm-eval, hydra, pandas... are not pulled).
# CI (.ci/run) runs tests/test_models.py in it, so the remote-code loaders are tested under 4.x and 5.x.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV="${VENV:-.venv-tf5}"
TRANSFORMERS_SPEC="${TRANSFORMERS_SPEC:-transformers>=5,<6}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet "$TRANSFORMERS_SPEC" "tqdm>=4.66" "pytest>=8"
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
echo "model-test environment with $("$VENV/bin/python" -c "import transformers; print(\"transformers\", transformers.__version__)") in $(cd "$VENV" && pwd)"
