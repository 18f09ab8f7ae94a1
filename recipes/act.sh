#!/usr/bin/env bash
# ACT judgment stage: GRPO on contrast prompts ("which action is better?"), rewarded by act_judgment.
#
# Input:  $DATA_DIR/act/{train,eval}.jsonl from `openrlhf-act data build --out $DATA_DIR/act`.
# Output: a Hugging Face checkpoint in $SAVE_DIR (default $OUTPUT_DIR/act), the model for IL or RL next.
# Usage:  bash recipes/act.sh            (PRESET=small bash recipes/act.sh for a first try on 1 GPU)
#         DRY_RUN=1 bash recipes/act.sh  (print the commands; `openrlhf-act recipe list` shows every setting)
#
# recipe-check: PRESET=paper|small|cpu
# recipe-check: MODE=local|job
# recipe-check: ACT_SWAP_CONSISTENCY=0|1
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stage_setup act
setting ACT_LR 1e-6 "actor learning rate of the ACT stage"
setting ACT_SWAP_CONSISTENCY 0 "1: also ask each prompt with the candidates swapped, bonus when both verdicts are right (the consistency executor replaces the reward file; about 2x rollout cost)"
setting OPENRLHF_ACT_CONSISTENCY_BONUS "" "ACT_SWAP_CONSISTENCY=1: the bonus (default 0.5); forwarded to the Ray workers"
require_int ACT_SWAP_CONSISTENCY
settings_done

grpo_args "$ACT_LR"
OPENRLHF_ARGS+=(
    --data.prompt_dataset "$DATA_DIR/act/train.jsonl"
    --eval.dataset "$DATA_DIR/act/eval.jsonl"
)
add_data_flags act_judgment
if [[ $ACT_SWAP_CONSISTENCY == 1 ]]; then
    add_agent_executor consistency_executor.py
    FORWARD_ENV+=" OPENRLHF_ACT_CONSISTENCY_BONUS"
else
    add_reward act_judgment
fi
add_extra_args
launch_ray_module openrlhf.cli.train_ppo_ray "${OPENRLHF_ARGS[@]}"
