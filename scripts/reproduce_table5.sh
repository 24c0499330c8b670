#!/usr/bin/env bash
# Reproduce TABES Table 5 (BoE ablations: GSM8K pass@1 and runtime at L = 128) with boe-eval, on a machine that
# holds the weights locally.
#
# Protocol (TABES section 4.3; configs/sweep/paper_table5.yaml):
#   model      GSAI-ML/LLaDA-8B-Instruct (bf16), chat template, zero-shot d1 GSM8K prompt (configs/task/gsm8k.yaml)
#   layout     L = 128, block length 32, T = 128 steps (one token per step), greedy tokens
#   variants   Confidence (Top-1); BoE full; w/o confidence gating; w/o anti-collapse; w/o ActiveQueryAttention;
#              active fraction rho = 0.10 / 0.25 / 0.50; BoE's entropy floor h_t = h_max (1 - t/T) (section 4.1)
#   runtime    end-to-end evaluation time of each cell on this machine (the paper's: 8 x H200)
#
#   LLADA_8B_INSTRUCT=/path/to/LLaDA-8B-Instruct scripts/reproduce_table5.sh
#   LIMIT=64 scripts/reproduce_table5.sh                        # a quick partial check
#   LAUNCH="accelerate launch --num_processes 8 -m boe_eval.harness.cli" scripts/reproduce_table5.sh
# Output: results/paper_table5/<model>/table_ablation.{md,tex} (+ rows/, cells.md). Rerunning skips finished cells.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${MODEL:-llada_8b_instruct}"
export LLADA_8B_INSTRUCT="${LLADA_8B_INSTRUCT:-/models/LLaDA-8B-Instruct}"
export LLADA_1_5="${LLADA_1_5:-/models/LLaDA-1.5}"
LIMIT="${LIMIT:-null}"
LAUNCH="${LAUNCH:-boe-eval}"
$LAUNCH sweep=paper_table5 model="$MODEL" task=gsm8k gen_length=128 block_length=32 limit="$LIMIT" "$@"
boe-report "results/paper_table5/$MODEL"
