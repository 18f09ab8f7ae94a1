#!/usr/bin/env bash
# Early Experience self-reflection baseline (arXiv 2510.08558): supervised fine-tuning on model-written
# rationales of why the expert action beats the build's alternative, each followed by the expert action.
# Early Experience trains these rows mixed with the expert (IL) rows in one pass, in place of IL: the default.
#
# Input:  $DATA_DIR/reflection/{train,eval}.jsonl from `openrlhf-act data export --kind reflection --build $DATA_DIR/act
#         --model M`, and with REFLECTION_MIX=sft also $DATA_DIR/sft/ from `data export --kind sft --build $DATA_DIR/act`.
# Output: a Hugging Face checkpoint in $SAVE_DIR (default $OUTPUT_DIR/reflection).
# Usage:  bash recipes/reflection.sh, or pipeline.sh with STAGES=reflection (or reflection,rl)
#
# recipe-check: PRESET=paper|small|cpu
# recipe-check: MODE=local|job
# recipe-check: REFLECTION_MIX=sft|none
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stage_setup reflection
setting REFLECTION_LR 1e-5 "learning rate of the reflection stage"
setting REFLECTION_MIX sft "expert rows trained in the same pass: sft (Early Experience: reflections + IL rows) | none"
require_choice REFLECTION_MIX sft none
settings_done
# The flag groups every stage shares (values from the settings above):
source "$(dirname "${BASH_SOURCE[0]}")/openrlhf_flags.sh"

DATA_KIND=reflection # what recipe check holds the --data.* flags below to (openrlhf_act/data_kinds.py)
train=$DATA_DIR/reflection/train.jsonl
eval=$DATA_DIR/reflection/eval.jsonl
if [[ $REFLECTION_MIX == sft ]]; then # both kinds are prompt -> response rows: OpenRLHF concatenates them
    train+=,$DATA_DIR/sft/train.jsonl
    eval+=,$DATA_DIR/sft/eval.jsonl
fi

# The shared groups are in openrlhf_flags.sh; this stage's own flags are written here.
launch_deepspeed_module openrlhf.cli.train_sft \
    --model.model_name_or_path "$MODEL" \
    --adam.lr "$REFLECTION_LR" \
    --data.dataset "$train" --eval.dataset "$eval" \
    --data.input_key prompt --data.output_key response --data.apply_chat_template \
    "${SFT_BATCHES[@]}" \
    "${SFT_DEEPSPEED[@]}" \
    "${EVAL_CHECKPOINTS_AND_LOGS[@]}" \
    "${EXTRA_ARGS[@]}" # $REFLECTION_EXTRA_ARGS: your own flags, last (later flags win)
