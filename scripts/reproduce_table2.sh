#!/usr/bin/env bash
# Reproduce TABES Table 2 (LLaDA-8B, pass@1) with boe-eval, on a machine that holds the weights locally.
#
# Protocol (TABES section 4.1, the d1 decoding setup of LookUM / PC-Sampler; docs/references.md §7, §9; docs/protocols.md):
#   model          GSAI-ML/LLaDA-8B-Instruct (bf16), chat template, zero-shot d1 prompts
#                  (the paper's baselines equal d1's LLaDA-8B-Instruct numbers, docs/references.md §9)
#   tasks          mbpp humaneval gsm8k math500 countdown sudoku (configs/task/<name>.yaml)
#   lengths        L = 128 and 256, block length 32
#   steps          T = L/2 for every sampler (two tokens per step, fixed horizon; configs/sweep/paper_table2.yaml)
#   decoding       greedy (temperature 0), no early stop (full-length NFE; NFE to the stop string, for the
#                  d1 tasks the first EOS, is recorded too)
#   samplers       confidence, margin, entropy, pc_sampler, remdm_llada, lookum, boe with the parameters
#                  of configs/sampler/<name>.yaml (the papers' defaults)
# Every (sampler, task, L) is one cell: rerunning this script after an interruption skips finished cells.
#
#   LLADA_8B_INSTRUCT=/path/to/LLaDA-8B-Instruct scripts/reproduce_table2.sh
#   LIMIT=32 TASKS="gsm8k" LENGTHS=128 scripts/reproduce_table2.sh        # a quick partial check
#   LAUNCH="accelerate launch --num_processes 8 -m boe_eval.harness.cli" scripts/reproduce_table2.sh   # 8 GPUs
# Extra arguments are passed to boe-eval as Hydra overrides (e.g. batch_size=4).
# Output: results/paper_table2/<model>/{rows/, table_main.md, table_main.tex, pareto_nfe.png, ...}
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP="${SWEEP:-paper_table2}"
MODEL="${MODEL:-llada_8b_instruct}"
export LLADA_8B_INSTRUCT="${LLADA_8B_INSTRUCT:-/models/LLaDA-8B-Instruct}"
export LLADA_1_5="${LLADA_1_5:-/models/LLaDA-1.5}"
TASKS="${TASKS:-mbpp humaneval gsm8k math500 countdown sudoku}"
LENGTHS="${LENGTHS:-128 256}"
LIMIT="${LIMIT:-null}"
LAUNCH="${LAUNCH:-boe-eval}"
export HF_ALLOW_CODE_EVAL=1   # humaneval / mbpp execute the generated code (lm-eval's code_eval)
for L in $LENGTHS; do
    for TASK in $TASKS; do
        echo "== $SWEEP: model=$MODEL task=$TASK L=$L block=32 steps=$((L / 2))"
        $LAUNCH sweep="$SWEEP" model="$MODEL" task="$TASK" gen_length="$L" block_length=32 \
            limit="$LIMIT" "$@"
    done
done
boe-report "results/$SWEEP/$MODEL"
