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

deepspeed_args "$DPO_LR"
OPENRLHF_ARGS+=(
    --model.beta "$DPO_BETA"
    --data.dataset "$DATA_DIR/dpo/train.jsonl"
    --eval.dataset "$DATA_DIR/dpo/eval.jsonl"
    --eval.split train
)
add_data_flags dpo
add_extra_args
launch_deepspeed_module openrlhf.cli.train_dpo "${OPENRLHF_ARGS[@]}"
