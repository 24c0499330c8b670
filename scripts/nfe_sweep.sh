#!/usr/bin/env bash
# Run a compute-matched sweep (configs/sweep/<name>.yaml) and write its report (tables + Pareto plots).
# A sweep killed at any point can be restarted with the same command: finished cells are skipped.
#
#   scripts/nfe_sweep.sh tiny_sudoku_nfe                      # the CPU sweep committed under results/
#   scripts/nfe_sweep.sh paper_figure4                        # TABES Figure 4: humaneval mbpp gsm8k math500
#   TASKS="gsm8k math500" scripts/nfe_sweep.sh paper_figure4 limit=100
# TASKS (optional) runs the sweep once per task config; extra arguments are Hydra overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/nfe_sweep.sh <sweep name> [hydra overrides...]" >&2; exit 2; }
SWEEP="$1"; shift
[ -f "configs/sweep/$SWEEP.yaml" ] || { echo "nfe_sweep.sh: no sweep configs/sweep/$SWEEP.yaml; sweeps are: $(ls configs/sweep | sed 's/\.yaml$//' | tr '\n' ' ')" >&2; exit 2; }
if [ "$SWEEP" = paper_figure4 ] && [ -z "${TASKS:-}" ]; then TASKS="humaneval mbpp gsm8k math500"; fi
export LLADA_8B_INSTRUCT="${LLADA_8B_INSTRUCT:-/models/LLaDA-8B-Instruct}"
export HF_ALLOW_CODE_EVAL=1
OUT="$(boe-eval sweep="$SWEEP" "$@" --cfg job --resolve 2>/dev/null | sed -n 's/^output_dir: //p' | head -1)" || true
if [ -n "${TASKS:-}" ]; then
    for TASK in $TASKS; do
        boe-eval sweep="$SWEEP" task="$TASK" "$@"
    done
else
    boe-eval sweep="$SWEEP" "$@"
fi
boe-report "${OUT:-results/$SWEEP}"
