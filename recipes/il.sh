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
# The flag groups every stage shares (values from the settings above):
source "$(dirname "${BASH_SOURCE[0]}")/openrlhf_flags.sh"

DATA_KIND=$IL_DATA # what recipe check holds the --data.* flags below to (openrlhf_act/data_kinds.py)
case $IL_DATA in
    sft) columns=(--data.input_key prompt --data.output_key response) ;;
    sft_multiturn) columns=(--data.input_key messages --data.multiturn) ;;
esac

# The shared groups are in openrlhf_flags.sh; this stage's own flags are written here.
launch_deepspeed_module openrlhf.cli.train_sft \
    --model.model_name_or_path "$MODEL" \
    --adam.lr "$IL_LR" \
    --data.dataset "$DATA_DIR/$IL_DATA/train.jsonl" --eval.dataset "$DATA_DIR/$IL_DATA/eval.jsonl" \
    "${columns[@]}" --data.apply_chat_template \
    "${SFT_BATCHES[@]}" \
    "${SFT_DEEPSPEED[@]}" \
    "${EVAL_CHECKPOINTS_AND_LOGS[@]}" \
    "${EXTRA_ARGS[@]}" # $IL_EXTRA_ARGS: your own flags, last (later flags win)
