#!/usr/bin/env bash
# The paper's pipelines and its baselines and controls: stages run one after another, each starting
# from the Hugging Face checkpoint the previous stage saved.
#
#   STAGES=act,il | act,rl | act,il,rl (v2's full pipeline)        ACT, then action training
#   STAGES=il | rl | il,rl                                           baselines without ACT
#   STAGES=dpo,il,rl | sft_choice,il,rl                              controls: ACT replaced by DPO / SFT-on-choice
#   STAGES=il,il | il,rl,rl                                          epoch-matched controls
#   STAGES=reflection | reflection,rl                                Early Experience baseline: reflection rows
#                                                                    mixed with the IL rows, in place of IL
#
# Stage i writes $PIPELINE_DIR/<i>-<stage>; a rerun skips the stages that already finished there.
# Every stage's own settings apply (ACT_LR, IL_LR, RL_EXTRA_ARGS, ...; see `openrlhf-act recipe list`).
#
# recipe-check: PRESET=paper|small|cpu
# recipe-check: STAGES=act,il|act,rl|act,il,rl|il|rl|il,rl|dpo,il,rl|sft_choice,il,rl|il,il|il,rl,rl|reflection,rl
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KNOWN_STAGES=(act il rl dpo sft_choice reflection)
DONE_MARKER=.openrlhf_act_stage_done

setting STAGES act,il,rl "comma-separated stages, run in order: act, il, rl, dpo, sft_choice, reflection"
# shellcheck disable=SC2153  # STAGES is assigned by `setting`
setting PIPELINE_DIR "$OUTPUT_DIR/${STAGES//,/-}-$PRESET" "where the stages write, one folder <i>-<stage> each"
setting WANDB_GROUP "${STAGES//,/-}-$PRESET" "LOGGER=wandb: the group of this pipeline's runs"
absolute PIPELINE_DIR

IFS=, read -ra stages <<<"$STAGES"
((${#stages[@]} > 0)) || die "STAGES is empty"
for stage in "${stages[@]}"; do
    [[ " ${KNOWN_STAGES[*]} " == *" $stage "* ]] || die "unknown stage '$stage' in STAGES; known: ${KNOWN_STAGES[*]}"
done
settings_done

model=$MODEL
for i in "${!stages[@]}"; do
    stage=${stages[$i]}
    save_dir=$PIPELINE_DIR/$((i + 1))-$stage
    if [[ $RUN_AS == run && -f $save_dir/$DONE_MARKER ]]; then
        printf 'pipeline: stage %d (%s) already finished in %s; skipping\n' "$((i + 1))" "$stage" "$save_dir" >&2
        model=$save_dir
        continue
    fi
    note "stage $((i + 1))/${#stages[@]}: $stage, starting from $model"
    stage_env=(MODEL="$model" SAVE_DIR="$save_dir" RUN_NAME="${STAGES//,/-}-$PRESET-$((i + 1))-$stage"
        WANDB_GROUP="$WANDB_GROUP")
    if [[ $RUN_AS == run ]]; then
        # Each stage's output also goes to its own log, next to its checkpoint folder.
        log=$save_dir.log
        started=$SECONDS
        mkdir -p "$PIPELINE_DIR"
        printf 'pipeline: stage %d/%d (%s) from %s; log: %s\n' "$((i + 1))" "${#stages[@]}" "$stage" "$model" "$log" >&2
        env "${stage_env[@]}" bash "$RECIPES_DIR/$stage.sh" 2>&1 | tee -a "$log" ||
            die "stage $((i + 1)) ($stage) failed; its log: $log (finished stages are kept; rerun to resume)"
    else
        env "${stage_env[@]}" bash "$RECIPES_DIR/$stage.sh"
    fi
    if [[ $RUN_AS == run ]]; then
        # With MODE=job the checkpoint is written on the cluster; it is visible here on shared storage only.
        if [[ -f $save_dir/config.json ]]; then
            touch "$save_dir/$DONE_MARKER"
            printf 'pipeline: stage %d (%s) finished in %d s; checkpoint: %s\n' "$((i + 1))" "$stage" \
                "$((SECONDS - started))" "$save_dir" >&2
        elif [[ $MODE == local ]]; then
            die "stage $stage ended without a Hugging Face checkpoint in $save_dir"
        fi
    fi
    model=$save_dir
done
