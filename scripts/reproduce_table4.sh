#!/usr/bin/env bash
# Reproduce TABES Table 4 (unconditional generation on OpenWebText, MDLM at T = 128) with boe-eval, on a GPU
# machine that holds the weights and data locally (docs/protocols.md §6 says what follows ReMDM's sample_eval):
#   model      kuleshov-group/mdlm-owt (configs/model/mdlm_owt.yaml; its remote code needs flash_attn)
#   samples    5000 x 1024 tokens from an empty prompt (configs/task/owt_uncond.yaml), temperature 1
#   rows       MDLM, MDLM + FB, MDLM + DFM, ReMDM (loop), MDLM + BoE at 128 NFE (T = 128) and 256 / 512 NFE
#              (configs/sweep/paper_table4.yaml); with $SEDD_OWT set also the SEDD-absorb row
#              (louaaron/sedd-small in its Hub layout, configs/sweep/paper_table4_sedd.yaml; its GPT-2 tokenizer
#              from the SEDD directory, else $SEDD_TOKENIZER, else the GPT-2 scorer's directory)
#   metrics    MAUVE vs 5000 OpenWebText validation chunks (GPT-2 large features), GenPPL under GPT-2 large,
#              unigram entropy
#
#   MDLM_OWT=/models/mdlm-owt GPT2_LARGE=/models/gpt2-large OWT_REFERENCE=/data/owt_valid_1024.jsonl \
#       [SEDD_OWT=/models/sedd-small] scripts/reproduce_table4.sh
#   LIMIT=64 scripts/reproduce_table4.sh          # a quick partial check
# OWT_REFERENCE: .jsonl with a `text` field (or .txt, one document per line): OpenWebText validation chunks of
# 1024 GPT-2 tokens decoded to text, in random order (ReMDM draws a fresh shuffled batch per sample).
# Extra arguments are passed to boe-eval as Hydra overrides (e.g. batch_size=32).
# Output: results/paper_table4/mdlm_owt/{rows/, table4.md, ...} (and results/paper_table4/sedd_owt/ with $SEDD_OWT)
set -euo pipefail
cd "$(dirname "$0")/.."
export MDLM_OWT="${MDLM_OWT:-/models/mdlm-owt}"
export BOE_UNCOND_SCORER="${GPT2_LARGE:-/models/gpt2-large}"
export BOE_UNCOND_FEATURIZER="${FEATURIZER:-$BOE_UNCOND_SCORER}"
export BOE_UNCOND_REFERENCE="${OWT_REFERENCE:-/data/owt_valid_1024.jsonl}"
LIMIT="${LIMIT:-5000}"
LAUNCH="${LAUNCH:-boe-eval}"
$LAUNCH sweep=paper_table4 limit="$LIMIT" "$@"
python scripts/uncond_table.py results/paper_table4/mdlm_owt
if [ -n "${SEDD_OWT:-}" ]; then
  export SEDD_TOKENIZER="${SEDD_TOKENIZER:-$BOE_UNCOND_SCORER}"
  $LAUNCH sweep=paper_table4_sedd limit="$LIMIT" "$@"
  python scripts/uncond_table.py results/paper_table4/sedd_owt
fi
