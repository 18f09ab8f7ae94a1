#!/usr/bin/env bash
# Online environment RL (beyond the paper's offline RL stage): GRPO on live ScienceWorld / ALFWorld
# episodes, played inside OpenRLHF's vLLM rollout actors by the multi-turn agent executor
# openrlhf_act/integrations/openrlhf/env_executor.py (--train.agent_func_path; no reward file).
# The reward is the episode's final score normalized to 0..1 (docs/evaluation.md, "Online environment RL").
#
# Input:  $DATA_DIR/online_env/{train,eval}.jsonl: one row per episode, its label
#         {"kind": "online_env", "env": "scienceworld", "task": ..., "variation": ...} (or "game" for ALFWorld).
#         The whole episode (prompt, every reply and observation) must fit PROMPT_MAX_LEN + GENERATE_MAX_LEN.
# Output: a Hugging Face checkpoint in $SAVE_DIR (default $OUTPUT_DIR/online_env).
# Usage:  MODEL=runs/rl GENERATE_MAX_LEN=6144 bash recipes/online_env.sh
#
# recipe-check: PRESET=paper|small|cpu
# recipe-check: MODE=local|job
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stage_setup online_env
setting ONLINE_ENV_LR 1e-6 "actor learning rate of online environment RL"
setting OPENRLHF_ACT_ENV_POOL 4 "simulators (JVMs, games) kept per rollout actor and reused across episodes; forwarded to the Ray workers"
setting OPENRLHF_ACT_ENV_STOP "" "JSON list of stop strings that end a turn (default [\"\\nObservation:\"]); forwarded to the Ray workers"
setting OPENRLHF_ACT_ENV_OPTIONS "" "JSON object of adapter options per environment, e.g. {\"alfworld\": {\"data_dir\": \"/data/alfworld\"}}; forwarded"
setting OPENRLHF_ACT_CHAT_TEMPLATE_KWARGS "" "JSON passed to the chat template, e.g. {\"enable_thinking\": false}; forwarded to the Ray workers"
setting ALFWORLD_DATA "${ALFWORLD_DATA:-}" "ALFWorld data directory on the workers (for relative 'game' paths in labels); forwarded"
settings_done
# The flag groups every stage shares (values from the settings above):
source "$(dirname "${BASH_SOURCE[0]}")/openrlhf_flags.sh"

DATA_KIND=online_env # what recipe check holds the --data.* flags below to (openrlhf_act/data_kinds.py)
entry_file executor online_env
FORWARD_ENV+=" OPENRLHF_ACT_ENV_POOL OPENRLHF_ACT_ENV_STOP OPENRLHF_ACT_ENV_OPTIONS OPENRLHF_ACT_CHAT_TEMPLATE_KWARGS ALFWORLD_DATA"

# shellcheck disable=SC2154  # $reward / $executor: set by entry_file
# The shared groups are in openrlhf_flags.sh; this stage's own flags are written here.
launch_ray_module openrlhf.cli.train_ppo_ray \
    --actor.model_name_or_path "$MODEL" \
    "${GRPO_CLUSTER[@]}" \
    "${GRPO_ALGORITHM[@]}" \
    --actor.adam.lr "$ONLINE_ENV_LR" \
    --data.prompt_dataset "$DATA_DIR/online_env/train.jsonl" --eval.dataset "$DATA_DIR/online_env/eval.jsonl" \
    --data.input_key prompt --data.label_key label --data.apply_chat_template \
    --train.agent_func_path "$executor" \
    "${GRPO_ROLLOUT[@]}" \
    "${GRPO_DEEPSPEED[@]}" \
    "${EVAL_CHECKPOINTS_AND_LOGS[@]}" \
    "${EXTRA_ARGS[@]}" # $ONLINE_ENV_EXTRA_ARGS: your own flags, last (later flags win)
