#!/usr/bin/env bash
# Reproduce TABES Table 3 (LLaDA-1.5, pass@1): the Table 2 protocol on GSAI-ML/LLaDA-1.5 (bf16, chat template):
# tasks mbpp humaneval gsm8k math500 countdown sudoku, L = 128 / 256, block 32, T = L/2 steps for every sampler,
# greedy decoding, samplers confidence margin entropy pc_sampler remdm_llada lookum boe
# (configs/sweep/paper_table3.yaml). See scripts/reproduce_table2.sh for the variables (TASKS, LENGTHS, LIMIT, LAUNCH).
#
#   LLADA_1_5=/path/to/LLaDA-1.5 scripts/reproduce_table3.sh
# Output: results/paper_table3/llada_1_5/
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=paper_table3 MODEL="${MODEL:-llada_1_5}" exec scripts/reproduce_table2.sh "$@"
