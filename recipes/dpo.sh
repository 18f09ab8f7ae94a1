#!/usr/bin/env bash
# DPO control: the same contrast pairs as ACT, trained with DPO (chosen = expert, rejected = alternative).
#
# Input:  $DATA_DIR/dpo/{train,eval}.jsonl from `openrlhf-act data export --kind dpo --build $DATA_DIR/act`.
# Output: a Hugging Face checkpoint in $SAVE_DIR (default $OUTPUT_DIR/dpo); the paper follows it with IL and RL.
#
# recipe-check: PRESET=paper|small|cpu
# recipe-check: MODE=local|job
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stage_setup dpo
setting DPO_LR 5e-7 "learning rate of the DPO control"
setting DPO_BETA 0.1 "DPO beta (strength of the pull towards the reference model)"
settings_done
# The flag groups every stage shares (values from the settings above):
source "$(dirname "${BASH_SOURCE[0]}")/openrlhf_flags.sh"

DATA_KIND=dpo # what recipe check holds the --data.* flags below to (openrlhf_act/data_kinds.py)

# The shared groups are in openrlhf_flags.sh; this stage's own flags are written here.
launch_deepspeed_module openrlhf.cli.train_dpo \
    --model.model_name_or_path "$MODEL" \
    --model.beta "$DPO_BETA" \
    --adam.lr "$DPO_LR" \
    --data.dataset "$DATA_DIR/dpo/train.jsonl" --eval.dataset "$DATA_DIR/dpo/eval.jsonl" --eval.split train \
    --data.prompt_key prompt --data.chosen_key chosen --data.rejected_key rejected --data.apply_chat_template \
    "${SFT_BATCHES[@]}" \
    "${SFT_DEEPSPEED[@]}" \
    "${EVAL_CHECKPOINTS_AND_LOGS[@]}" \
    "${EXTRA_ARGS[@]}" # $DPO_EXTRA_ARGS: your own flags, last (later flags win)
