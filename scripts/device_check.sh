#!/usr/bin/env bash
# Accelerator check (issue 19): throughput, BoE vs confidence step time and peak memory of a random ~1B
# LLaDA-architecture model in bfloat16 (scripts/device_check.py has the details). Under 10 minutes on one GPU.
#
#   bash scripts/device_check.sh OUT_DIR [--smoke] [--device cuda:0] [--dtype bfloat16]
#
# Uses $PYTHON if set (a Python whose torch is a CUDA build: scripts/install.sh installs the CPU build), else
# .venv/bin/python, else python3. `--smoke` runs tiny sizes on CPU in seconds.
set -euo pipefail
if [[ $# -lt 1 || "$1" == -* ]]; then
    echo "usage: bash scripts/device_check.sh OUT_DIR [--smoke] [--device DEVICE] [--dtype DTYPE]" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
out="$1"
shift
exec "$python" scripts/device_check.py --out "$out" "$@"
