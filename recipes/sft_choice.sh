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
# The flag groups every stage shares (values from the settings above):
source "$(dirname "${BASH_SOURCE[0]}")/openrlhf_flags.sh"

DATA_KIND=sft_choice # what recipe check holds the --data.* flags below to (openrlhf_act/data_kinds.py)

# The shared groups are in openrlhf_flags.sh; this stage's own flags are written here.
launch_deepspeed_module openrlhf.cli.train_sft \
    --model.model_name_or_path "$MODEL" \
    --adam.lr "$SFT_CHOICE_LR" \
    --data.dataset "$DATA_DIR/sft_choice/train.jsonl" --eval.dataset "$DATA_DIR/sft_choice/eval.jsonl" \
    --data.input_key prompt --data.output_key response --data.apply_chat_template \
    "${SFT_BATCHES[@]}" \
    "${SFT_DEEPSPEED[@]}" \
    "${EVAL_CHECKPOINTS_AND_LOGS[@]}" \
    "${EXTRA_ARGS[@]}" # $SFT_CHOICE_EXTRA_ARGS: your own flags, last (later flags win)
