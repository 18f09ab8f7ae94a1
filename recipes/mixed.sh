#!/usr/bin/env bash
# Mixed: ACT contrast prompts blended into your own GRPO prompt data, in one run. The routing reward
# gives rows with an ACT label the act_judgment reward and sends every other row to your reward.
#
# Your prompt rows need our columns: prompt = chat messages, label = a string (datasource optional);
# `openrlhf-act recipe check --check-data` compares the files before you spend GPU hours.
# Usage:  USER_PROMPT_DATA=my/train.jsonl USER_REWARD=my_reward.py bash recipes/mixed.sh
#
# recipe-check: PRESET=paper|small|cpu
# recipe-check: MODE=local|job
# recipe-check-env: USER_PROMPT_DATA=./data/user/train.jsonl USER_REWARD=http://127.0.0.1:5000/get_reward
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stage_setup mixed
setting MIXED_LR 1e-6 "actor learning rate of the mixed run"
setting USER_PROMPT_DATA "" "your prompt data: a .jsonl/.parquet file or a dataset name (required)"
setting USER_EVAL_DATA "" "your eval prompts, evaluated next to the ACT eval split (optional)"
setting USER_REWARD "" "your reward: a .py file defining reward_func(queries, prompts, labels), or http(s) URL(s) (required)"
setting USER_LOG_KEYS "" "the extra_logs keys your reward returns (comma-separated), logged as user_<key>"
setting ACT_FRACTION 0.2 "share of ACT contrast prompts in the blend (the rest is yours)"
settings_done
# The flag groups every stage shares (values from the settings above):
source "$(dirname "${BASH_SOURCE[0]}")/openrlhf_flags.sh"

[[ -n $USER_PROMPT_DATA ]] || die "set USER_PROMPT_DATA to your prompt data"
[[ -n $USER_REWARD ]] || die "set USER_REWARD to your reward file or URL"
awk -v f="$ACT_FRACTION" 'BEGIN { exit !(f + 0 > 0 && f + 0 < 1) }' || die "ACT_FRACTION must be between 0 and 1, got '$ACT_FRACTION'"
user_fraction=$(awk -v f="$ACT_FRACTION" 'BEGIN { printf "%g", 1 - f }')
for name in USER_PROMPT_DATA USER_EVAL_DATA USER_REWARD; do
    if [[ ${!name} == ./* || ${!name} == ../* || -e ${!name} ]]; then
        absolute "$name"
    fi
done

# What the routing reward reads inside the rollout actors (build_runtime_env forwards them to Ray).
# shellcheck disable=SC2034  # read as ${!name}
OPENRLHF_ACT_ROUTE_DEFAULT=$USER_REWARD
# shellcheck disable=SC2034  # read as ${!name}
OPENRLHF_ACT_ROUTE_LOG_KEYS=$USER_LOG_KEYS

DATA_KIND=act_judgment # what recipe check holds the --data.* flags below to (openrlhf_act/data_kinds.py)
entry_file reward routing

# shellcheck disable=SC2154  # $reward / $executor: set by entry_file
# The shared groups are in openrlhf_flags.sh; this stage's own flags are written here.
launch_ray_module openrlhf.cli.train_ppo_ray \
    --actor.model_name_or_path "$MODEL" \
    "${GRPO_CLUSTER[@]}" \
    "${GRPO_ALGORITHM[@]}" \
    --actor.adam.lr "$MIXED_LR" \
    --data.prompt_dataset "$DATA_DIR/act/train.jsonl,$USER_PROMPT_DATA" \
    --data.prompt_probs "$ACT_FRACTION,$user_fraction" \
    --eval.dataset "$DATA_DIR/act/eval.jsonl${USER_EVAL_DATA:+,$USER_EVAL_DATA}" \
    --data.input_key prompt --data.label_key label --data.apply_chat_template \
    --reward.remote_url "$reward" \
    "${GRPO_ROLLOUT[@]}" \
    "${GRPO_DEEPSPEED[@]}" \
    "${EVAL_CHECKPOINTS_AND_LOGS[@]}" \
    "${EXTRA_ARGS[@]}" # $MIXED_EXTRA_ARGS: your own flags, last (later flags win)
