#!/usr/bin/env bash
# ACT judgment stage: GRPO on contrast prompts ("which action is better?"), rewarded by act_judgment.
#
# Input:  $DATA_DIR/act/{train,eval}.jsonl from `openrlhf-act data build --out $DATA_DIR/act`.
# Output: a Hugging Face checkpoint in $SAVE_DIR (default $OUTPUT_DIR/act), the model for IL or RL next.
# Usage:  bash recipes/act.sh            (PRESET=small bash recipes/act.sh for a first try on 1 GPU)
#         DRY_RUN=1 bash recipes/act.sh  (print the commands; `openrlhf-act recipe list` shows every setting)
#
# recipe-check: PRESET=paper|small
# recipe-check: MODE=local|job
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stage_setup act
setting ACT_LR 1e-6 "actor learning rate of the ACT stage"
settings_done

grpo_args "$ACT_LR"
OPENRLHF_ARGS+=(
    --data.prompt_dataset "$DATA_DIR/act/train.jsonl"
    --eval.dataset "$DATA_DIR/act/eval.jsonl"
)
add_data_flags act_judgment
add_reward act_judgment
add_extra_args
launch_ray_module openrlhf.cli.train_ppo_ray "${OPENRLHF_ARGS[@]}"
