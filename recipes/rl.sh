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
# The flag groups every stage shares (values from the settings above):
source "$(dirname "${BASH_SOURCE[0]}")/openrlhf_flags.sh"

DATA_KIND=next_action # what recipe check holds the --data.* flags below to (openrlhf_act/data_kinds.py)
entry_file reward next_action

# shellcheck disable=SC2154  # $reward / $executor: set by entry_file
# The shared groups are in openrlhf_flags.sh; this stage's own flags are written here.
launch_ray_module openrlhf.cli.train_ppo_ray \
    --actor.model_name_or_path "$MODEL" \
    "${GRPO_CLUSTER[@]}" \
    "${GRPO_ALGORITHM[@]}" \
    --actor.adam.lr "$RL_LR" \
    --data.prompt_dataset "$DATA_DIR/next_action/train.jsonl" --eval.dataset "$DATA_DIR/next_action/eval.jsonl" \
    --data.input_key prompt --data.label_key label --data.apply_chat_template \
    --reward.remote_url "$reward" \
    "${GRPO_ROLLOUT[@]}" \
    "${GRPO_DEEPSPEED[@]}" \
    "${EVAL_CHECKPOINTS_AND_LOGS[@]}" \
    "${EXTRA_ARGS[@]}" # $RL_EXTRA_ARGS: your own flags, last (later flags win)
