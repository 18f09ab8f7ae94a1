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

grpo_args "$ONLINE_ENV_LR"
OPENRLHF_ARGS+=(
    --data.prompt_dataset "$DATA_DIR/online_env/train.jsonl"
    --eval.dataset "$DATA_DIR/online_env/eval.jsonl"
)
add_data_flags online_env
add_agent_executor env_executor.py
FORWARD_ENV+=" OPENRLHF_ACT_ENV_POOL OPENRLHF_ACT_ENV_STOP OPENRLHF_ACT_ENV_OPTIONS OPENRLHF_ACT_CHAT_TEMPLATE_KWARGS ALFWORLD_DATA"
add_extra_args
launch_ray_module openrlhf.cli.train_ppo_ray "${OPENRLHF_ARGS[@]}"
