#!/usr/bin/env bash
# IL stage: supervised fine-tuning on expert actions (state -> expert action), with DeepSpeed.
#
# Input:  $DATA_DIR/$IL_DATA/{train,eval}.jsonl from `openrlhf-act data export --kind sft` (or sft_multiturn).
# Output: a Hugging Face checkpoint in $SAVE_DIR (default $OUTPUT_DIR/il).
# Usage:  MODEL=runs/act bash recipes/il.sh   (ACT -> IL), or pipeline.sh with STAGES=act,il
#
# recipe-check: PRESET=paper|small|cpu
# recipe-check: MODE=local|job
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stage_setup il
setting IL_LR 1e-5 "learning rate of the IL stage"
setting IL_DATA sft "which export to imitate: sft (one state -> action per row) | sft_multiturn (whole episodes)"
require_choice IL_DATA sft sft_multiturn
settings_done

deepspeed_args "$IL_LR"
OPENRLHF_ARGS+=(
    --data.dataset "$DATA_DIR/$IL_DATA/train.jsonl"
    --eval.dataset "$DATA_DIR/$IL_DATA/eval.jsonl"
)
add_data_flags "$IL_DATA"
add_extra_args
launch_deepspeed_module openrlhf.cli.train_sft "${OPENRLHF_ARGS[@]}"
