#!/usr/bin/env bash
# ACT judgment stage: GRPO on contrast prompts ("which action is better?"), rewarded by act_judgment.
#
# Input:  $ACT_DATA/{train,eval}.jsonl (default $DATA_DIR/act) from `openrlhf-act data build --out $DATA_DIR/act`.
# Output: a Hugging Face checkpoint in $SAVE_DIR (default $OUTPUT_DIR/act), the model for IL or RL next.
# Usage:  bash recipes/act.sh            (PRESET=small bash recipes/act.sh for a first try on 1 GPU)
#         ACT_REASONING=none bash recipes/act.sh   (the no-reasoning control: the verdict alone, on data
#                                                   from `data build --judge-reasoning none --out $DATA_DIR/act_no_reasoning`)
#         DRY_RUN=1 bash recipes/act.sh  (print the commands; `openrlhf-act recipe list` shows every setting)
#
# recipe-check: PRESET=paper|small|cpu
# recipe-check: MODE=local|job
# recipe-check: ACT_SWAP_CONSISTENCY=0|1
# recipe-check: ACT_REASONING=free|none
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stage_setup act
setting ACT_REASONING free "free: reason, then the verdict (ACT) | none: the verdict alone, the paper's no-reasoning control (its data's labels make the reward count any reasoning as malformed)"
require_choice ACT_REASONING free none
default_data=$DATA_DIR/act
[[ $ACT_REASONING == none ]] && default_data=$DATA_DIR/act_no_reasoning
setting ACT_DATA "$default_data" "folder of the ACT contrast prompts (openrlhf-act data build --out; with ACT_REASONING=none, --judge-reasoning none)"
absolute ACT_DATA
setting ACT_LR 1e-6 "actor learning rate of the ACT stage"
setting ACT_SWAP_CONSISTENCY 0 "1: also ask each prompt with the candidates swapped, bonus when both verdicts are right (the consistency executor replaces the reward file; about 2x rollout cost)"
setting OPENRLHF_ACT_CONSISTENCY_BONUS "" "ACT_SWAP_CONSISTENCY=1: the bonus (default 0.5); forwarded to the Ray workers"
switch ACT_SWAP_CONSISTENCY
settings_done
# The prompts (and the labels the reward enforces) were written by `data build`: they must ask what ACT_REASONING says.
if [[ $RUN_AS == run && -f $ACT_DATA/manifest.json ]]; then
    built=free
    grep -q '"judge_reasoning": "none"' "$ACT_DATA/manifest.json" && built=none
    [[ $built == "$ACT_REASONING" ]] || die "ACT_REASONING=$ACT_REASONING but $ACT_DATA was built with --judge-reasoning $built; rebuild it or set ACT_DATA"
fi
# The flag groups every stage shares (values from the settings above):
source "$(dirname "${BASH_SOURCE[0]}")/openrlhf_flags.sh"

DATA_KIND=act_judgment # what recipe check holds the --data.* flags below to (openrlhf_act/data_kinds.py)
# shellcheck disable=SC2154  # $reward / $executor: set by entry_file
if [[ $ACT_SWAP_CONSISTENCY == 1 ]]; then
    entry_file executor consistency
    scoring=(--train.agent_func_path "$executor")
    FORWARD_ENV+=" OPENRLHF_ACT_CONSISTENCY_BONUS"
else
    entry_file reward act_judgment
    scoring=(--reward.remote_url "$reward")
fi

# The shared groups are in openrlhf_flags.sh; this stage's own flags are written here.
launch_ray_module openrlhf.cli.train_ppo_ray \
    --actor.model_name_or_path "$MODEL" \
    "${GRPO_CLUSTER[@]}" \
    "${GRPO_ALGORITHM[@]}" \
    --actor.adam.lr "$ACT_LR" \
    --data.prompt_dataset "$ACT_DATA/train.jsonl" --eval.dataset "$ACT_DATA/eval.jsonl" \
    --data.input_key prompt --data.label_key label --data.apply_chat_template \
    "${scoring[@]}" \
    "${GRPO_ROLLOUT[@]}" \
    "${GRPO_DEEPSPEED[@]}" \
    "${EVAL_CHECKPOINTS_AND_LOGS[@]}" \
    "${EXTRA_ARGS[@]}" # $ACT_EXTRA_ARGS: your own flags, last (later flags win)
