# shellcheck shell=bash
# The OpenRLHF flags the stages share, in groups like OpenRLHF's own example scripts: the one place
# they are written. A stage recipe sources this file after `settings_done` (the values come from the
# settings) and writes its command as these groups plus its own flags: model, learning rate, data
# columns, reward. `DRY_RUN=1 bash recipes/<stage>.sh` prints the whole command, expanded, to copy.
# Every flag follows a setting (`openrlhf-act recipe list`); <STAGE>_EXTRA_ARGS, passed last, wins.
# shellcheck disable=SC2034,SC2153,SC2154  # the groups are read by the recipes; the settings come from common.sh

# ---- GRPO stages: openrlhf.cli.train_ppo_ray --------------------------------------------------

# GPUs and engines: actor and reference layout, vLLM rollout engines, colocation.
GRPO_CLUSTER=(
    --actor.num_nodes "$NNODES" --actor.num_gpus_per_node "$GPUS_PER_NODE"
    --ref.num_nodes "$NNODES" --ref.num_gpus_per_node "$GPUS_PER_NODE"
    --vllm.num_engines "$VLLM_ENGINES" --vllm.tensor_parallel_size "$VLLM_TP"
    --vllm.gpu_memory_utilization "$VLLM_GPU_UTIL" --vllm.sync_backend "$SYNC_BACKEND"
    ${on[PREFIX_CACHING]:+--vllm.enable_prefix_caching} ${on[ENFORCE_EAGER]:+--vllm.enforce_eager}
    ${on[COLOCATE]:+--train.colocate_all} ${on[SLEEP]:+--vllm.enable_sleep --ds.enable_sleep}
)

# Algorithm: GRPO (group-normalized advantages) with a k3 KL loss against the stage's starting model.
GRPO_ALGORITHM=(
    --algo.advantage.estimator "$ESTIMATOR" --rollout.n_samples_per_prompt "$GROUP_SIZE"
    --algo.kl.use_loss --algo.kl.estimator k3 --algo.kl.init_coef "$KL_COEF"
    ${on[DYNAMIC_FILTERING]:+--algo.dynamic_filtering_enable --algo.dynamic_filtering_range 0 1}
)

# Lengths, sampling and batches; one pass over the prompts per episode; eval sampling and the best checkpoint.
GRPO_ROLLOUT=(
    ${on[MAX_SAMPLES]:+--data.max_samples "$MAX_SAMPLES"}
    --data.max_len "$((PROMPT_MAX_LEN + GENERATE_MAX_LEN))" --rollout.max_new_tokens "$GENERATE_MAX_LEN"
    --rollout.temperature "$TEMPERATURE"
    --rollout.batch_size "$ROLLOUT_BATCH" --rollout.micro_batch_size "$MICRO_ROLLOUT_BATCH"
    --train.batch_size "$TRAIN_BATCH" --train.micro_batch_size "$MICRO_TRAIN_BATCH"
    --train.num_episodes "$EPOCHS" --train.max_epochs 1 --train.seed "$SEED"
    --eval.n_samples_per_prompt "$EVAL_SAMPLES"
    ${on[BEST_CHECKPOINT]:+--ckpt.best_metric_key "$BEST_CHECKPOINT"}
)

# DeepSpeed for the actor.
GRPO_DEEPSPEED=(
    --ds.zero_stage "$ZERO_STAGE" --ds.param_dtype "$PARAM_DTYPE" --ds.attn_implementation "$ATTN_IMPL"
    ${on[PACKING]:+--ds.packing_samples} ${on[GRADIENT_CHECKPOINTING]:+--actor.gradient_checkpointing_enable}
)

# ---- Supervised stages: openrlhf.cli.train_sft, openrlhf.cli.train_dpo ------------------------

# Lengths and batches.
SFT_BATCHES=(
    ${on[MAX_SAMPLES]:+--data.max_samples "$MAX_SAMPLES"}
    --data.max_len "$SFT_MAX_LEN"
    --train.batch_size "$SFT_BATCH" --train.micro_batch_size "$SFT_MICRO_BATCH"
    --train.max_epochs "$EPOCHS" --train.seed "$SEED"
)

# DeepSpeed for the model.
SFT_DEEPSPEED=(
    --ds.zero_stage "$ZERO_STAGE" --ds.param_dtype "$PARAM_DTYPE" --ds.attn_implementation "$ATTN_IMPL"
    ${on[PACKING]:+--ds.packing_samples} ${on[GRADIENT_CHECKPOINTING]:+--model.gradient_checkpointing_enable}
)

# ---- Every stage -------------------------------------------------------------------------------

# Evaluation, resumable checkpoints beside the final model (a rerun resumes from $SAVE_DIR.ckpt), logs.
# No --ckpt.save_hf: GRPO stages write those copies outside the rotated folder, so nothing would delete them.
EVAL_CHECKPOINTS_AND_LOGS=(
    --eval.steps "$EVAL_STEPS"
    --ckpt.output_dir "$SAVE_DIR" --ckpt.path "$SAVE_DIR.ckpt" --ckpt.save_steps "$SAVE_STEPS"
    --ckpt.max_num "$KEEP_CHECKPOINTS" --ckpt.load_enable
    --logger.wandb.run_name "$RUN_NAME" --logger.logging_steps 1
    ${on[tensorboard]:+--logger.tensorboard_dir "$SAVE_DIR/tensorboard"}
    ${on[wandb]:+--logger.wandb.key True --logger.wandb.project "$WANDB_PROJECT"}
    ${on[wandb]:+${WANDB_GROUP:+--logger.wandb.group "$WANDB_GROUP"}}
)
