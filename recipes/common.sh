# shellcheck shell=bash
# The mechanics every openrlhf-act recipe shares (sourced by each of them, never run on its own):
# settings read from the environment with documented defaults and three presets, one way to print
# or run a command, and the Ray / DeepSpeed launchers with the Ray runtime environment. No OpenRLHF
# flag is written here: each recipe writes its own OpenRLHF command line, naming the flag groups the
# stages share (openrlhf_flags.sh) and writing its own flags in plain sight.
#
#   DRY_RUN=1        print every command, fully expanded, one per line, shell-quoted; run nothing
#   LIST_SETTINGS=1  print the settings (setting<TAB>NAME<TAB>VALUE<TAB>DOC); run nothing
#
# A recipe calls stage_setup, declares its settings (setting, by_preset, require_*, switch), calls
# settings_done, sources openrlhf_flags.sh, then writes `launch_ray_module MODULE FLAGS...` or
# `launch_deepspeed_module MODULE FLAGS...`, where `${on[NAME]:+FLAG...}` adds FLAG... only when the setting NAME asks for it.
# `openrlhf-act recipe list` shows every setting with its defaults; `openrlhf-act recipe check`
# expands the recipes with DRY_RUN=1 and validates every flag against the installed OpenRLHF.

if [[ -n ${_OPENRLHF_ACT_PRELUDE:-} ]]; then
    return 0
fi
_OPENRLHF_ACT_PRELUDE=1

# shellcheck disable=SC2034  # read by the recipes that source this file
RECIPES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RECIPE_NAME=$(basename "${BASH_SOURCE[1]:-recipe}")

die() {
    printf '%s: error: %s\n' "$RECIPE_NAME" "$*" >&2
    exit 2
}

if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 402)); then
    die "bash >= 4.2 is needed (associative arrays); this is bash $BASH_VERSION"
fi

if [[ ${LIST_SETTINGS:-0} == 1 ]]; then
    RUN_AS=list
elif [[ ${DRY_RUN:-0} == 1 ]]; then
    RUN_AS=dry
else
    RUN_AS=run
fi

# ---------------------------------------------------------------------------------------------
# Settings: `setting NAME DEFAULT DOC` keeps $NAME when the environment sets it (non-empty),
# otherwise assigns DEFAULT; LIST_SETTINGS=1 prints it. `by_preset PAPER SMALL` picks a default.

setting() {
    local name=$1 default=$2 doc=$3
    if [[ -z ${!name:-} ]]; then
        printf -v "$name" '%s' "$default"
    fi
    if [[ $RUN_AS == list ]]; then
        local shown=${!name}
        printf 'setting\t%s\t%s\t%s\n' "$name" "${shown//$PWD\//./}" "$doc"
    fi
}

settings_done() {
    # Call once a recipe has declared all its settings: LIST_SETTINGS=1 stops here.
    if [[ $RUN_AS == list ]]; then
        exit 0
    fi
}

by_preset() {
    # by_preset PAPER SMALL [CPU]: the default for the current preset (CPU defaults to SMALL's).
    case $PRESET in
        paper) printf '%s' "$1" ;;
        small) printf '%s' "$2" ;;
        cpu) printf '%s' "${3-$2}" ;;
    esac
}

require_int() {
    local name
    for name in "$@"; do
        [[ ${!name} =~ ^-?[0-9]+$ ]] || die "$name must be an integer, got '${!name}'"
    done
}

require_choice() {
    local name=$1 choice
    shift
    for choice in "$@"; do
        [[ ${!name} == "$choice" ]] && return 0
    done
    die "$name must be one of: $*; got '${!name}'"
}

# on[NAME] is set when the setting NAME asks for its flags: a switch at 1 (see `switch`), MAX_SAMPLES
# other than all, and on[$LOGGER] for the chosen logger. A recipe writes `${on[NAME]:+FLAG...}`.
declare -gA on=()

switch() {
    # switch NAME...: 0/1 settings; on[NAME] is set for each one at 1.
    local name
    for name in "$@"; do
        require_choice "$name" 0 1
        if [[ ${!name} == 1 ]]; then
            on[$name]=1
        fi
    done
}

absolute() {
    # absolute VAR: make a relative path absolute (Ray jobs run in another working directory).
    local name=$1
    if [[ -n ${!name} && ${!name} != /* ]]; then
        printf -v "$name" '%s/%s' "$PWD" "${!name#./}"
    fi
}

setting PRESET paper "paper: Qwen3-8B on one node of 8x80 GB, as in the paper | small: Qwen3-0.6B on 1 GPU, a first try | cpu: a tiny local model on a machine without a GPU (tests, openrlhf-act demo)"
require_choice PRESET paper small cpu

setting MODE local "local: run here (on the Ray cluster an exported RAY_ADDRESS names, else a private head each GRPO stage starts and stops) | job: 'ray job submit' to RAY_ADDRESS"
require_choice MODE local job
setting RAY_ADDRESS "http://127.0.0.1:8265" "MODE=job: the Ray dashboard address the job is submitted to"
setting JOB_SHIP installed "MODE=job: how the plugin reaches the cluster: installed (scripts/setup_gpu.sh or the image on every node) | py_modules (Ray uploads this checkout's package with the job)"
# openrlhf-act is not on PyPI: a pip requirement would name a package no index has.
[[ $JOB_SHIP != pip ]] || die "JOB_SHIP=pip is not offered: openrlhf-act is not published on PyPI; use JOB_SHIP=py_modules (Ray uploads this checkout's package) or JOB_SHIP=installed (scripts/setup_gpu.sh or docker/Dockerfile on every node)"
require_choice JOB_SHIP installed py_modules
setting PYTHON python3 "Python interpreter that runs OpenRLHF's modules (on the cluster for MODE=job)"

setting DATA_DIR "./data" "root of the exported data: act/ (openrlhf-act data build), sft/ next_action/ dpo/ sft_choice/ (openrlhf-act data export)"
setting OUTPUT_DIR "./runs" "root of the checkpoints and logs (shared storage for MODE=job)"
absolute DATA_DIR
absolute OUTPUT_DIR
setting MODEL "$(by_preset Qwen/Qwen3-8B Qwen/Qwen3-0.6B "$OUTPUT_DIR/tiny-model")" "model to start from: a hub id or a local Hugging Face checkpoint (PRESET=cpu: python -m openrlhf_act.devtools.tiny_model DIR builds one)"
if [[ -d $MODEL ]]; then
    absolute MODEL
elif [[ $MODEL == /* || $MODEL == .* || $MODEL == "~"* || $PRESET == cpu ]] && [[ $RUN_AS == run && $MODE == local ]]; then
    die "MODEL=$MODEL: no such model folder (a local Hugging Face checkpoint is a folder with config.json)"
fi

setting NNODES 1 "nodes per model role"
setting GPUS_PER_NODE "$(by_preset 8 1)" "GPUs per node for every role (OpenRLHF's own default is 8)"
setting VLLM_TP 1 "tensor-parallel size of each vLLM engine"
require_int NNODES GPUS_PER_NODE VLLM_TP
setting VLLM_ENGINES "$((NNODES * GPUS_PER_NODE / VLLM_TP))" "vLLM rollout engines (colocated: NNODES*GPUS_PER_NODE/VLLM_TP)"
setting VLLM_GPU_UTIL 0.6 "vLLM gpu_memory_utilization (the engines sleep while DeepSpeed trains when colocated)"
setting COLOCATE "$(by_preset 1 1 0)" "1: actor, reference and vLLM engines share the same GPUs (--train.colocate_all)"
setting SLEEP "$(by_preset 1 1 0)" "1 (with COLOCATE=1): vLLM engines and DeepSpeed sleep while the other works (--vllm.enable_sleep --ds.enable_sleep)"
setting PREFIX_CACHING 1 "1: vLLM prefix caching (--vllm.enable_prefix_caching)"
setting ENFORCE_EAGER "$(by_preset 0 0 1)" "1: vLLM without CUDA graphs (--vllm.enforce_eager)"
setting SYNC_BACKEND "$(by_preset nccl nccl gloo)" "backend of the DeepSpeed -> vLLM weight sync (--vllm.sync_backend)"
setting ZERO_STAGE "$(by_preset 3 2)" "DeepSpeed ZeRO stage"
setting PARAM_DTYPE bf16 "training precision (--ds.param_dtype: bf16 | fp16)"
setting ATTN_IMPL "$(by_preset flash_attention_2 flash_attention_2 sdpa)" "attention implementation for training (--ds.attn_implementation)"
setting PACKING "$(by_preset 1 1 0)" "1: pack samples into one sequence (--ds.packing_samples; needs flash_attention_2)"
setting GRADIENT_CHECKPOINTING "$(by_preset 1 1 0)" "1: recompute activations in the backward pass (--actor/--model.gradient_checkpointing_enable)"
require_int VLLM_ENGINES ZERO_STAGE
switch COLOCATE SLEEP PREFIX_CACHING ENFORCE_EAGER PACKING GRADIENT_CHECKPOINTING
if [[ $COLOCATE != 1 ]]; then
    unset 'on[SLEEP]' # sleep mode only applies to roles that share their GPUs
fi

setting GROUP_SIZE "$(by_preset 8 8 4)" "GRPO group: responses sampled per prompt (--rollout.n_samples_per_prompt)"
setting ESTIMATOR group_norm "advantage estimator (GRPO: group_norm; also dr_grpo, rloo, reinforce_baseline)"
setting KL_COEF 1e-3 "KL loss coefficient against the stage's starting model (k3 estimator); 0 drops the reference model"
setting DYNAMIC_FILTERING "$(by_preset 1 1 0)" "1: drop prompt groups whose scores are all 0 or all 1 (--algo.dynamic_filtering_enable on scores)"
setting ROLLOUT_BATCH "$(by_preset 64 16 2)" "prompts per rollout step (each sampled GROUP_SIZE times)"
setting TRAIN_BATCH "$(by_preset 128 32 8)" "samples per optimizer step (GRPO)"
setting MICRO_ROLLOUT_BATCH "$(by_preset 1 1 4)" "samples per GPU per forward pass while scoring rollouts (1: every last-step size deals evenly over 8 GPUs; recipe check proves a layout)"
setting MICRO_TRAIN_BATCH "$(by_preset 2 4)" "samples per GPU per training micro-step (GRPO)"
setting PROMPT_MAX_LEN "$(by_preset 4096 2048 1536)" "longest prompt in tokens (GRPO stages)"
setting GENERATE_MAX_LEN "$(by_preset 8192 2048 48)" "longest response in tokens: thinking-length by default (GRPO stages)"
setting TEMPERATURE 1.0 "rollout sampling temperature"
switch DYNAMIC_FILTERING
require_int GROUP_SIZE ROLLOUT_BATCH TRAIN_BATCH MICRO_ROLLOUT_BATCH MICRO_TRAIN_BATCH
require_int PROMPT_MAX_LEN GENERATE_MAX_LEN

setting SFT_MAX_LEN "$(by_preset 4096 2048 1600)" "longest prompt + target in tokens (IL, DPO and SFT-on-choice stages)"
setting SFT_BATCH "$(by_preset 128 32 2)" "samples per optimizer step (IL, DPO and SFT-on-choice stages)"
setting SFT_MICRO_BATCH "$(by_preset 2 4 1)" "samples per GPU per micro-step (IL, DPO and SFT-on-choice stages)"
setting HOSTFILE "" "DeepSpeed hostfile, required when NNODES > 1 for the IL, DPO and SFT-on-choice stages"
setting DS_MASTER_PORT auto "port of the DeepSpeed launcher's rendezvous (--master_port): auto (a free port picked at launch, so two stages on one machine never collide) | a port number"
if [[ $DS_MASTER_PORT != auto ]] && ! [[ $DS_MASTER_PORT =~ ^[1-9][0-9]{0,4}$ && $DS_MASTER_PORT -le 65535 ]]; then
    die "DS_MASTER_PORT must be auto or a port number 1-65535, got '$DS_MASTER_PORT'"
fi
require_int SFT_MAX_LEN SFT_BATCH SFT_MICRO_BATCH

setting EPOCHS "$(by_preset 3 3 1)" "passes over the stage's data (the paper's epoch-matched setting: 3 per stage)"
setting EVAL_STEPS "$(by_preset 20 20 2)" "evaluate on the eval split every N steps (-1: never)"
setting EVAL_SAMPLES "$(by_preset 4 4 1)" "responses per eval prompt (GRPO stages)"
setting SAVE_STEPS "$(by_preset 50 50 1)" "save a resumable checkpoint every N steps (-1: only the final model) in \$SAVE_DIR.ckpt, beside the model folder; reruns resume from it"
setting KEEP_CHECKPOINTS 2 "resumable checkpoints kept per stage, the oldest deleted first (--ckpt.max_num); no Hugging Face copies are kept besides the final model"
setting BEST_CHECKPOINT none "GRPO stages: none | auto (OpenRLHF picks the first eval_*_pass1) | an eval metric key: also keep the one DeepSpeed checkpoint with the best eval value (--ckpt.best_metric_key; one more full checkpoint on disk)"
setting SEED 42 "training seed"
setting MAX_SAMPLES "$(by_preset all all 4)" "use at most N rows of each training and eval file (--data.max_samples) | all"
require_int EPOCHS EVAL_STEPS EVAL_SAMPLES SAVE_STEPS SEED KEEP_CHECKPOINTS
((KEEP_CHECKPOINTS >= 1)) || die "KEEP_CHECKPOINTS must be at least 1 (the checkpoint a rerun resumes from), got $KEEP_CHECKPOINTS"
if [[ $BEST_CHECKPOINT != auto ]]; then
    on[BEST_CHECKPOINT]=1 # auto: OpenRLHF's own default, no flag
fi
if [[ $MAX_SAMPLES != all ]]; then
    require_int MAX_SAMPLES
    on[MAX_SAMPLES]=1
fi

setting LOGGER tensorboard "tensorboard (under the stage's output dir) | wandb (needs WANDB_API_KEY in the environment) | none"
require_choice LOGGER tensorboard wandb none
# `wandb login` writes ~/.netrc, which Ray actors on another node or under another HOME do not read; their
# wandb.login(key="True") then fails mid-run. The key reaches every process as WANDB_API_KEY (never printed).
if [[ $LOGGER == wandb && $RUN_AS == run && -z ${WANDB_API_KEY:-} ]]; then
    die "LOGGER=wandb needs WANDB_API_KEY in the environment (export it, or read it from a file: export WANDB_API_KEY=\$(cat FILE)); 'wandb login' alone does not reach the Ray workers"
fi
# shellcheck disable=SC2034  # read by the recipes
on[$LOGGER]=1
setting WANDB_PROJECT openrlhf-act "LOGGER=wandb: project"
setting WANDB_GROUP "" "LOGGER=wandb: group (e.g. one per pipeline)"

setting OPENRLHF_ACT_REWARD_PRESET paper "reward constants: paper (1 / 0 / -0.5 malformed) | binary (1 / 0); forwarded to the Ray workers"
setting OPENRLHF_ACT_REWARD_CONFIG "" "JSON object overriding single reward constants, e.g. {\"malformed\": -1}; forwarded to the Ray workers"
setting FORWARD_ENV "" "names of more environment variables to forward to the Ray workers (space-separated)"

# ---------------------------------------------------------------------------------------------
# Printing and running commands.

quote_into() {
    # quote_into VAR WORD: VAR becomes WORD quoted for the shell (POSIX single quotes, as shlex reads them).
    if [[ $2 =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
        printf -v "$1" '%s' "$2"
    else
        printf -v "$1" "'%s'" "${2//\'/\'\\\'\'}"
    fi
}

command_line() {
    local word quoted line=""
    for word in "$@"; do
        quote_into quoted "$word"
        line+="${line:+ }$quoted"
    done
    printf '%s\n' "$line"
}

note() {
    # A comment line in the DRY_RUN output; `recipe check` reads the `recipe:` and `data-kind:` notes.
    if [[ $RUN_AS == dry ]]; then
        printf '# %s\n' "$*"
    fi
}

run_cmd() {
    case $RUN_AS in
        dry) command_line "$@" ;;
        list) ;;
        run)
            local shown
            shown=$(command_line "$@")
            if [[ -n ${WANDB_API_KEY:-} ]]; then
                shown=${shown//"$WANDB_API_KEY"/<hidden>} # the key travels in the runtime env, never to a log
            fi
            printf '+ %s\n' "$shown" >&2
            "$@"
            ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# What the installed plugin knows (one CLI call, shared with child recipes): the files OpenRLHF loads,
# reward files and agent executors (ACT_ENTRY_FILES), ACT_CPU_ENV, ACT_PACKAGE_DIR, ACT_VERSION.

if [[ -z ${OPENRLHF_ACT_RECIPE_VARS:-} ]]; then
    command -v openrlhf-act >/dev/null 2>&1 ||
        die "openrlhf-act is not on PATH: pip install openrlhf-act into the environment that runs OpenRLHF"
    OPENRLHF_ACT_RECIPE_VARS=$(openrlhf-act recipe vars) || die "'openrlhf-act recipe vars' failed"
    export OPENRLHF_ACT_RECIPE_VARS
fi
eval "$OPENRLHF_ACT_RECIPE_VARS"
# PRESET=cpu: OpenRLHF's trainers on a machine without a GPU, through openrlhf_act/devtools/cpu_shim.py
# (loaded in every process by a sitecustomize on PYTHONPATH, next to a pure-torch flash_attn stand-in).
# These variables must reach every process: exported here, forwarded to the Ray workers by
# build_runtime_env. A value you set yourself is kept; the PYTHONPATH entry is prepended to yours.
CPU_ENV=("${!ACT_CPU_ENV[@]}")
if [[ $PRESET == cpu ]]; then
    for cpu_var in "${CPU_ENV[@]}"; do
        if [[ $cpu_var == PYTHONPATH ]]; then
            [[ :${PYTHONPATH:-}: == *":${ACT_CPU_ENV[PYTHONPATH]}:"* ]] ||
                export PYTHONPATH=${ACT_CPU_ENV[PYTHONPATH]}${PYTHONPATH:+:$PYTHONPATH}
        else
            export "$cpu_var=${!cpu_var:-${ACT_CPU_ENV[$cpu_var]}}"
        fi
    done
fi

# ---------------------------------------------------------------------------------------------
# What a recipe's command line reads besides its settings. A recipe also names the data kind its
# rows are (DATA_KIND, see openrlhf_act/data_kinds.py): `recipe check` holds its --data.* flags to it.

DATA_KIND=""
JOB_WORKING_DIR=""

stage_setup() {
    # stage_setup NAME: the stage's SAVE_DIR, RUN_NAME and EXTRA_ARGS (the words of <NAME>_EXTRA_ARGS).
    STAGE=$1
    setting SAVE_DIR "$OUTPUT_DIR/$STAGE" "where this stage writes its final Hugging Face checkpoint (and tensorboard/); its resumable checkpoints go beside it, in \$SAVE_DIR.ckpt"
    absolute SAVE_DIR
    setting RUN_NAME "$STAGE-$PRESET" "run name shown by the logger"
    local extra=${STAGE^^}_EXTRA_ARGS
    setting "$extra" "" "more OpenRLHF flags for this stage, appended last (space-separated; later flags win)"
    # shellcheck disable=SC2034  # read by the recipes
    read -ra EXTRA_ARGS <<<"${!extra}"
}

entry_file() {
    # entry_file VAR NAME: VAR = the path OpenRLHF loads the reward file or agent executor NAME from. In
    # MODE=job with a shipped plugin, the file's folder becomes the job's working_dir and the path is relative to it.
    local file=${ACT_ENTRY_FILES[$2]:-}
    [[ -n $file ]] || die "unknown reward or agent executor '$2' (see: openrlhf-act reward list)"
    if [[ $MODE == job && $JOB_SHIP != installed ]]; then
        JOB_WORKING_DIR=$(dirname "$file")
        file=$(basename "$file")
    fi
    printf -v "$1" '%s' "$file"
}

# ---------------------------------------------------------------------------------------------
# Launchers. Reward settings reach the vLLM rollout actors only through Ray's runtime environment.

json_into() {
    # json_into VAR TEXT: VAR becomes TEXT as a JSON string literal.
    local s=$2
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    printf -v "$1" '"%s"' "$s"
}

build_runtime_env() {
    # RUNTIME_ENV = the Ray runtime env (JSON): env_vars with our reward settings, a wandb key if set (hidden
    # unless really running) and FORWARD_ENV; in MODE=job also how the plugin and the entry files travel.
    # No command substitution here, so a `die` stops the recipe.
    local names=(OPENRLHF_ACT_REWARD_PRESET OPENRLHF_ACT_REWARD_CONFIG OPENRLHF_ACT_ROUTE_DEFAULT
        OPENRLHF_ACT_ROUTE_LOG_KEYS WANDB_API_KEY) extra name value key text vars=""
    read -ra extra <<<"$FORWARD_ENV"
    if [[ $PRESET == cpu ]]; then
        extra+=("${CPU_ENV[@]}")
    fi
    for name in "${names[@]}" "${extra[@]}"; do
        [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "FORWARD_ENV: '$name' is not a variable name"
        case $name in
            # train_ppo_ray's ray.init() sets these itself from its environment; Ray refuses a key set twice.
            TOKENIZERS_PARALLELISM | NCCL_DEBUG | RAY_ENABLE_ZERO_COPY_TORCH_TENSORS)
                die "FORWARD_ENV: OpenRLHF forwards $name itself; do not forward it again"
                ;;
        esac
        value=${!name:-}
        [[ -n $value ]] || continue
        if [[ $name == WANDB_API_KEY && $RUN_AS != run ]]; then
            value="<hidden>"
        fi
        json_into key "$name"
        json_into text "$value"
        vars+="${vars:+, }$key: $text"
    done
    RUNTIME_ENV="{\"env_vars\": {$vars}"
    if [[ $MODE == job ]]; then
        case $JOB_SHIP in
            py_modules)
                json_into text "$ACT_PACKAGE_DIR"
                RUNTIME_ENV+=", \"py_modules\": [$text]"
                ;;
            installed) ;;
        esac
        if [[ -n $JOB_WORKING_DIR ]]; then
            json_into text "$JOB_WORKING_DIR"
            RUNTIME_ENV+=", \"working_dir\": $text"
        fi
    fi
    RUNTIME_ENV+="}"
}

recipe_notes() {
    note "recipe: $RECIPE_NAME"
    if [[ $PRESET == cpu ]]; then
        local name
        for name in "${CPU_ENV[@]}"; do
            note "environment: $name=${!name:-}"
        done
    fi
    if [[ -n $DATA_KIND ]]; then
        note "data-kind: $DATA_KIND"
    fi
}

setting RESOURCE_WAIT_S 300 "seconds a stage waits for the GPUs and CPUs it asks of the Ray cluster to be free before it stops, naming what is missing"
setting KEEP_RAY 0 "1: leave running the Ray head a recipe started (by default it is stopped by pid when the recipe ends, also on a failure or Ctrl-C)"
require_int RESOURCE_WAIT_S
switch KEEP_RAY

preflight() {
    # preflight COMMAND...: `openrlhf-act recipe preflight` judges the stage's command before it runs (flags,
    # layout, dtype, data, disk, the Ray cluster's resources); it stops the stage before any model loads.
    [[ $RUN_AS == run ]] || return 0
    openrlhf-act recipe preflight --recipe "$RECIPES_DIR/$RECIPE_NAME" --data-kind "$DATA_KIND" \
        --wait "$RESOURCE_WAIT_S" -- "$@" || die "the preflight stopped this stage before anything started (see above)"
}

stop_ray_head() {
    # The EXIT trap of a recipe that started a head: stop it by the pids its state file names.
    openrlhf-act recipe ray-head stop --state "$RAY_HEAD_STATE" ||
        printf '%s: could not stop the Ray head recorded in %s\n' "$RECIPE_NAME" "$RAY_HEAD_STATE" >&2
}

ensure_ray_head() {
    # MODE=local: the Ray cluster the driver joins. RAY_ADDRESS in the environment names one (yours, the demo's);
    # otherwise the recipe starts a private head (its own port and temporary folder, so another Ray cluster on
    # this machine is left alone), exports RAY_ADDRESS for the driver, and stops it by pid when it ends.
    local gpus=$GPUS_PER_NODE cpus=() head
    if [[ $PRESET == cpu ]]; then
        # Fake GPU resources: one per role (actor, reference, vLLM engine), on loopback.
        gpus=$((2 * GPUS_PER_NODE + VLLM_ENGINES * VLLM_TP))
        cpus=(--num-cpus 4)
    fi
    RAY_HEAD_STATE=$SAVE_DIR.ray-head.json
    head=(openrlhf-act recipe ray-head start --state "$RAY_HEAD_STATE" --log "$SAVE_DIR.ray-head.log"
        --num-gpus "$gpus" "${cpus[@]}" --timeout "$RESOURCE_WAIT_S")
    case $RUN_AS in
        dry)
            note "unless RAY_ADDRESS is exported: a private Ray head for this stage, stopped when it ends (KEEP_RAY=1 keeps it):"
            run_cmd "${head[@]}"
            ;;
        run)
            if [[ $(declare -p RAY_ADDRESS) == "declare -x"* ]]; then
                return 0 # a cluster named in the environment; the preflight checks its resources
            fi
            ((NNODES == 1)) || die "NNODES=$NNODES with MODE=local: export RAY_ADDRESS=<head ip>:<port> of the Ray cluster that spans the nodes ('ray start --head' on one, 'ray start --address' on the others)"
            if [[ ${on[KEEP_RAY]:-} != 1 ]]; then
                trap stop_ray_head EXIT
                trap 'exit 130' INT
                trap 'exit 143' TERM
            fi
            printf '+ %s\n' "$(command_line "${head[@]}")" >&2
            RAY_ADDRESS=$("${head[@]}") || die "the private Ray head did not start; its log: $SAVE_DIR.ray-head.log"
            export RAY_ADDRESS
            if [[ ${on[KEEP_RAY]:-} == 1 ]]; then
                printf '%s: KEEP_RAY=1: the Ray head at %s stays up; stop it: openrlhf-act recipe ray-head stop --state %s\n' \
                    "$RECIPE_NAME" "$RAY_ADDRESS" "$RAY_HEAD_STATE" >&2
            fi
            ;;
        list) ;;
    esac
}

launch_ray_module() {
    # launch_ray_module MODULE ARGS...: an OpenRLHF Ray driver (train_ppo_ray), here or as a Ray job.
    local module=$1
    shift
    build_runtime_env
    recipe_notes
    if [[ $MODE == job ]]; then
        local command=(ray job submit --address "$RAY_ADDRESS" --runtime-env-json "$RUNTIME_ENV" -- "$PYTHON" -m "$module" "$@")
    else
        ensure_ray_head
        # The variable `ray job submit` gives its entrypoint: OpenRLHF's own ray.init() merges this runtime env.
        local command=(env "RAY_JOB_CONFIG_JSON_ENV_VAR={\"runtime_env\": $RUNTIME_ENV}" "$PYTHON" -m "$module" "$@")
    fi
    preflight "${command[@]}"
    run_cmd "${command[@]}"
}

launch_deepspeed_module() {
    # launch_deepspeed_module MODULE ARGS...: a DeepSpeed program (train_sft, train_dpo), here or as a Ray job.
    local module=$1
    shift
    local launcher=(deepspeed --num_gpus "$GPUS_PER_NODE" --master_port) port=$DS_MASTER_PORT
    if [[ $port == auto ]]; then
        # DeepSpeed's launcher always takes 29500 otherwise: a second stage on the machine fails with EADDRINUSE.
        case $RUN_AS in
            run) port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') ||
                die "could not pick a free port for the DeepSpeed launcher; set DS_MASTER_PORT" ;;
            *) port=FREE_PORT ;;
        esac
    fi
    launcher+=("$port")
    if ((NNODES > 1)); then
        [[ $MODE == local ]] || die "a multi-node DeepSpeed stage runs with MODE=local and HOSTFILE (one launcher drives all nodes)"
        [[ -n $HOSTFILE ]] || die "NNODES=$NNODES needs HOSTFILE (DeepSpeed's hostfile: one 'host slots=N' line per node)"
        launcher+=(--hostfile "$HOSTFILE" --num_nodes "$NNODES")
    fi
    build_runtime_env
    recipe_notes
    [[ $port != FREE_PORT ]] || note "--master_port FREE_PORT: a free port is picked at launch (DS_MASTER_PORT=N fixes it)"
    preflight "${launcher[@]}" --module "$module" "$@"
    if [[ $MODE == job ]]; then
        run_cmd ray job submit --address "$RAY_ADDRESS" --entrypoint-num-gpus "$GPUS_PER_NODE" \
            --runtime-env-json "$RUNTIME_ENV" -- "${launcher[@]}" --module "$module" "$@"
    else
        run_cmd "${launcher[@]}" --module "$module" "$@"
    fi
}
