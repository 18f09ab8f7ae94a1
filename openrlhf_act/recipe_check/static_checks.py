"""Static checks of what OpenRLHF and DeepSpeed only find once the models are loaded: reward and
agent files, dataset splits and blends, the colocated GPU layout, the micro-batch split, the Ray
runtime environment, the ``--data.*`` options against the recipe's data kind
(``openrlhf_act.data_kinds.DATA_KINDS``) and, with ``--check-data``, against the data files."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

from openrlhf_act.recipe_check.findings import CommandCheck
from openrlhf_act.recipe_check.layout import rollout_layout_problems
from openrlhf_act.recipe_check.openrlhf_main import OpenRLHFMain

# Where each OpenRLHF program reads datasets: (section, dataset attr, split attr, probabilities attr).
_SUPERVISED_DATA = (("data", "dataset", "dataset_split", "dataset_probs"), ("eval", "dataset", "split", None))
_DATASET_ARGS = {
    "openrlhf.cli.train_ppo_ray": (("data", "prompt_dataset", "prompt_split", "prompt_probs"), _SUPERVISED_DATA[1]),
    "openrlhf.cli.train_sft": _SUPERVISED_DATA,
    "openrlhf.cli.train_dpo": _SUPERVISED_DATA,
}
_LOCAL_DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".arrow")


def arg_value(args: Any, dotted: str) -> Any:
    """``args.a.b`` for ``"a.b"``; None where a part is missing (OpenRLHF's nested namespaces)."""
    for part in dotted.split("."):
        args = getattr(args, part, None)
    return args


def check_semantics(check: CommandCheck, main: OpenRLHFMain, args: Any) -> None:
    """What OpenRLHF only finds after loading models: files, blends, splits, GPU layout, runtime env."""
    launch = check.launch
    working_dir = (launch.runtime_env or {}).get("working_dir")
    for url in arg_value(args, "reward.remote_url") or []:
        if url == "agent" or url.startswith(("http://", "https://")):
            continue
        if not url.endswith(".py"):
            check.add("error", f"--reward.remote_url {url}: neither an http(s) URL nor a .py reward file", url)
        elif not _resolve(url, working_dir).is_file():
            check.add("error", f"--reward.remote_url {url}: no such file", "--reward.remote_url")
    agent = arg_value(args, "train.agent_func_path")
    if agent and not _resolve(agent, working_dir).is_file():
        check.add("error", f"--train.agent_func_path {agent}: no such file", "--train.agent_func_path")
    for section, data_attr, split_attr, probs_attr in _DATASET_ARGS.get(launch.module, ()):
        sources = arg_value(args, f"{section}.{data_attr}")
        if not sources:
            continue
        names = [s.strip() for s in sources.split(",")]
        split = arg_value(args, f"{section}.{split_attr}")
        flag = f"--{section}.{split_attr}"
        for name in names:
            if name.lower().endswith(_LOCAL_DATA_SUFFIXES) and split != "train":
                check.add("error", f"{name} is a data file, whose only split is 'train', but {flag} is {split!r}", flag)
        if probs_attr and arg_value(args, f"{section}.{probs_attr}") is not None:
            _check_probabilities(check, f"--{section}.{probs_attr}", arg_value(args, f"{section}.{probs_attr}"), names)
    if launch.module == "openrlhf.cli.train_ppo_ray":
        _check_colocation(check, args)
        for problem in rollout_layout_problems(args):
            check.add("error", problem, "--rollout.micro_batch_size")
        if arg_value(args, "ds.param_dtype") == "fp16" and arg_value(args, "vllm.num_engines"):
            check.add(
                "error",
                "--ds.param_dtype fp16 in a GRPO stage: the vLLM engines run bf16 and OpenRLHF's weight sync "
                "(vllm_worker_wrap.update_weight) asserts equal dtypes, so the first sync fails: set PARAM_DTYPE=bf16",
                "--ds.param_dtype",
            )
        world = arg_value(args, "actor.num_nodes") * arg_value(args, "actor.num_gpus_per_node")
        micro = 1 if arg_value(args, "train.dynamic_batch_enable") else arg_value(args, "train.micro_batch_size")
    else:
        world, micro = launch.world_size, arg_value(args, "train.micro_batch_size")
    if world and micro:
        _check_batch_split(check, args, world, micro)
    _check_runtime_env(check, main)


def _check_batch_split(check: CommandCheck, args: Any, world: int, micro: int) -> None:
    """DeepSpeed's start-up assert (after the model is loaded): the global batch splits exactly into
    micro-batches on every data-parallel GPU, as OpenRLHF's strategy sizes it."""
    parallel = (arg_value(args, "ds.ring_attn_size") or 1) * (arg_value(args, "ds.tensor_parallel_size") or 1)
    batch = arg_value(args, "train.batch_size") * parallel
    if batch < micro * world or batch % (micro * world):
        check.add(
            "error",
            f"--train.batch_size {arg_value(args, 'train.batch_size')} does not split into micro-batches of {micro} on "
            f"{world} GPU(s) (x{parallel} ring/tensor parallel): DeepSpeed would stop at start-up; use a multiple "
            f"of {micro * world // math.gcd(micro * world, parallel)}",
            "--train.batch_size",
        )


def _resolve(path: str, working_dir: str | None) -> Path:
    candidate = Path(path)
    if not candidate.is_absolute() and working_dir:
        candidate = Path(working_dir) / candidate
    return candidate


def _check_probabilities(check: CommandCheck, flag: str, raw: str, datasets: list[str]) -> None:
    try:
        probs = [float(p) for p in raw.split(",")]
    except ValueError:
        check.add("error", f"{flag} {raw}: not comma-separated numbers", flag)
        return
    if len(probs) != len(datasets):
        check.add("error", f"{flag} has {len(probs)} values for {len(datasets)} datasets", flag)
    elif abs(sum(probs) - 1.0) > 1e-6 or min(probs) < 0:
        check.add("error", f"{flag} {raw}: probabilities must be >= 0 and sum to 1", flag)


def _check_colocation(check: CommandCheck, args: Any) -> None:
    """Two asserts of train_ppo_ray.train() (after Ray starts), checked here before it does."""
    if not arg_value(args, "train.colocate_all") or arg_value(args, "train.async_enable"):
        return
    actor = arg_value(args, "actor.num_nodes") * arg_value(args, "actor.num_gpus_per_node")
    engines = arg_value(args, "vllm.num_engines") or 0
    if engines and actor != engines * arg_value(args, "vllm.tensor_parallel_size"):
        check.add(
            "error",
            f"--train.colocate_all needs actor GPUs ({actor}) = vLLM engines x tensor parallel size "
            f"({engines} x {arg_value(args, 'vllm.tensor_parallel_size')}) (train_ppo_ray.train asserts this)",
            "--vllm.num_engines",
        )
    ref = (arg_value(args, "ref.num_nodes"), arg_value(args, "ref.num_gpus_per_node"))
    if arg_value(args, "algo.kl.init_coef") > 0 and ref != (
        arg_value(args, "actor.num_nodes"),
        arg_value(args, "actor.num_gpus_per_node"),
    ):
        check.add(
            "error", "colocated actor and reference need the same nodes and GPUs per node", "--ref.num_gpus_per_node"
        )


def _check_runtime_env(check: CommandCheck, main: OpenRLHFMain) -> None:
    from openrlhf_act.rewards.config import config_from_env
    from openrlhf_act.rewards.routing import DEFAULT_ENV

    launch, env = check.launch, check.launch.runtime_env
    if env is None:
        return
    where = "--runtime-env-json" if launch.launcher.startswith("ray job") else "RAY_JOB_CONFIG_JSON_ENV_VAR"
    variables = env.get("env_vars") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        check.add("error", "runtime env env_vars must map names to strings", where)
        return
    clash = sorted(set(variables) & main.driver_env_keys)
    if clash:
        check.add("error", f"{main.module} sets {', '.join(clash)} in its own ray.init(); Ray refuses both", where)
    try:
        config_from_env(variables)
    except ValueError as exc:
        check.add("error", f"reward settings forwarded to Ray are invalid: {exc}", where)
    route = variables.get(DEFAULT_ENV, "").strip()
    if route and not route.startswith(("http://", "https://")) and not Path(route).is_file():
        check.add("error", f"{DEFAULT_ENV}={route}: neither an http(s) URL nor an existing .py reward file", where)
    for key in ("working_dir",):
        value = env.get(key)
        if isinstance(value, str) and "://" not in value and not Path(value).is_dir():
            check.add("error", f"runtime env {key} {value}: no such folder", where)
    for module in env.get("py_modules") or []:
        if isinstance(module, str) and "://" not in module and not Path(module).exists():
            check.add("error", f"runtime env py_modules entry {module}: no such path", where)


def check_data_kind(check: CommandCheck, args: Any) -> None:
    """The recipe's data kind (its ``# data-kind:`` note) decides the program and the ``--data.*`` options."""
    from openrlhf_act.data_kinds import DATA_KINDS

    name, module = check.command.data_kind, check.launch.module
    if not name:
        return
    kind = DATA_KINDS.get(name)
    if kind is None:
        check.add("error", f"data kind {name!r} is not in openrlhf_act.data_kinds.DATA_KINDS", module)
        return
    if kind.openrlhf_module != module:
        check.add("error", f"{kind.name} rows are read by {kind.openrlhf_module}, not {module}", module)
    for (option, value), flag in zip(kind.expected_args().items(), kind.flags):
        if arg_value(args, option) != value:
            check.add("error", f"{kind.name} rows need `{flag}` (openrlhf_act.data_kinds.DATA_KINDS)", flag.split()[0])


def check_datasets(check: CommandCheck, args: Any) -> None:
    """--check-data: local dataset files exist, carry the columns the flags name, blend, and hold no
    prompt longer than the recipe's prompt limit."""
    launch = check.launch
    keys = _column_flags(launch.module, args)
    for section, data_attr, _, _ in _DATASET_ARGS.get(launch.module, ()):
        flag = f"--{section}.{data_attr}"
        sources = arg_value(args, f"{section}.{data_attr}")
        if not sources:
            continue
        shapes = []
        for name in (s.strip().split("@")[0] for s in sources.split(",")):
            if not name.lower().endswith(_LOCAL_DATA_SUFFIXES):
                continue
            path = Path(name)
            if not path.is_file():
                check.add("error", f"{flag}: {name}: no such file", flag)
                continue
            row = _first_row(path)
            if row is None:
                continue
            missing = [f"{k} ({col})" for k, col in keys.items() if col not in row]
            if missing:
                check.add("error", f"{name}: first row lacks the column(s) {', '.join(missing)}", flag)
                continue
            shapes.append((name, {col: type(row[col]).__name__ for col in keys.values()}))
            _check_prompt_length(check, flag, path, keys, launch.module, args)
        for (first, a), (other, b) in itertools.pairwise(shapes):
            if a != b:
                check.add("error", f"{flag}: {first} and {other} cannot be blended: column types {a} vs {b}", flag)


def _check_prompt_length(
    check: CommandCheck, flag: str, path: Path, keys: dict[str, str], module: str, args: Any
) -> None:
    """OpenRLHF cuts an over-long prompt at its start (the system prompt and the task): no row of a
    data file may be longer than the recipe's prompt limit."""
    from openrlhf_act.prompt_budget import longest_prompt

    limit = _prompt_limit(module, args)
    input_key = keys.get("--data.input_key") or keys.get("--data.prompt_key")
    if limit is None or input_key is None:
        return
    found = longest_prompt(path, input_key)
    if found is not None and found[0] > limit[0]:
        setting = limit[1].rsplit(", ", 1)[-1]
        raise_it = f"{setting}={found[0]}" if setting == "PROMPT_MAX_LEN" else f"{setting} well above {found[0]}"
        check.add(
            "error",
            f"{path}: prompts up to {found[0]} tokens ({found[1]}) exceed the recipe's prompt limit {limit[0]} "
            f"({limit[1]}); OpenRLHF would cut their start, where the system prompt and the task are: rebuild "
            f"with `openrlhf-act data build/export --max-prompt-tokens {limit[0]}`, or set {raise_it}",
            flag,
        )


def _prompt_limit(module: str, args: Any) -> tuple[int, str] | None:
    """The prompt limit as the recipe resolves it: PROMPT_MAX_LEN for GRPO stages (passed to OpenRLHF as
    --data.max_len PROMPT_MAX_LEN + GENERATE_MAX_LEN and --rollout.max_new_tokens GENERATE_MAX_LEN), the
    whole sequence (SFT_MAX_LEN) for supervised ones; none for multi-turn SFT, which has no prompt."""
    max_len = arg_value(args, "data.max_len")
    if not isinstance(max_len, int) or arg_value(args, "data.multiturn"):
        return None
    if module != "openrlhf.cli.train_ppo_ray":
        return max_len, "--data.max_len, SFT_MAX_LEN"
    new_tokens = arg_value(args, "rollout.max_new_tokens")
    if not isinstance(new_tokens, int):
        return None
    return max_len - new_tokens, "--data.max_len - --rollout.max_new_tokens, PROMPT_MAX_LEN"


def _column_flags(module: str, args: Any) -> dict[str, str]:
    """The ``--data.*_key`` options the program reads rows through (those our data kinds for it name),
    with the columns the command gives them."""
    from openrlhf_act.data_kinds import DATA_KINDS

    multiturn = bool(arg_value(args, "data.multiturn"))
    kinds = [k for k in DATA_KINDS.values() if k.openrlhf_module == module and k.multiturn == multiturn]
    names = dict.fromkeys(option for kind in kinds for option, _ in kind.columns)
    columns = {f"--data.{n}": arg_value(args, f"data.{n}") for n in names}
    return {flag: col for flag, col in columns.items() if col}


def _first_row(path: Path) -> dict[str, Any] | None:
    if path.suffix.lower() not in (".jsonl", ".json"):
        return None
    with path.open() as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return None
                return row if isinstance(row, dict) else None
    return None
