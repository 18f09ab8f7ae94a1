#!/usr/bin/env bash
# SFT-on-choice control: supervised fine-tuning on the contrast prompts' correct verdicts, no reasoning.
#
# Input:  $DATA_DIR/sft_choice/{train,eval}.jsonl from `openrlhf-act data export --kind sft_choice --build $DATA_DIR/act`.
# Output: a Hugging Face checkpoint in $SAVE_DIR (default $OUTPUT_DIR/sft_choice); the paper follows it with IL and RL.
#
# recipe-check: PRESET=paper|small|cpu
# recipe-check: MODE=local|job
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stage_setup sft_choice
setting SFT_CHOICE_LR 1e-5 "learning rate of the SFT-on-choice control"
settings_done

deepspeed_args "$SFT_CHOICE_LR"
OPENRLHF_ARGS+=(
    --data.dataset "$DATA_DIR/sft_choice/train.jsonl"
    --eval.dataset "$DATA_DIR/sft_choice/eval.jsonl"
)
add_data_flags sft_choice
add_extra_args
launch_deepspeed_module openrlhf.cli.train_sft "${OPENRLHF_ARGS[@]}"
