#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install boe-eval with its test
# extra. torch is installed first, pinned to the local CPU build, so no CUDA wheels are pulled.
# The package accepts transformers 4.56+ and 5.x; this development venv stays on 4.x (TRANSFORMERS_SPEC) so
# that the whole suite runs on a known version, and scripts/install_tf5.sh builds .venv-tf5 with 5.x for the
# model tests (CI runs both).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"boe-eval needs Python 3.11, found {sys.version.split()[0]}"'
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]" "${TRANSFORMERS_SPEC:-transformers>=4.56,<5}"
echo "boe-eval installed in $(pwd)/.venv"
