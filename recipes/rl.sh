#!/usr/bin/env bash
# RL stage: GRPO on next-action prompts at expert states, rewarded by next_action (no environment rollouts).
#
# Input:  $DATA_DIR/next_action/{train,eval}.jsonl from `openrlhf-act data export --kind next_action`.
# Output: a Hugging Face checkpoint in $SAVE_DIR (default $OUTPUT_DIR/rl).
# Usage:  MODEL=runs/act bash recipes/rl.sh   (ACT -> RL), or pipeline.sh with STAGES=act,rl
#
# recipe-check: PRESET=paper|small|cpu
# recipe-check: MODE=local|job
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stage_setup rl
setting RL_LR 1e-6 "actor learning rate of the RL stage"
settings_done

grpo_args "$RL_LR"
OPENRLHF_ARGS+=(
    --data.prompt_dataset "$DATA_DIR/next_action/train.jsonl"
    --eval.dataset "$DATA_DIR/next_action/eval.jsonl"
)
add_data_flags next_action
add_reward next_action
add_extra_args
launch_ray_module openrlhf.cli.train_ppo_ray "${OPENRLHF_ARGS[@]}"
