"""``openrlhf-act data export``: data for the other stages, from the same trajectories and the same
task split as ACT data, written to ``OUT/{train,eval}.jsonl`` + a manifest. One row shape per kind:

* ``sft``: agent prompt -> expert action (``openrlhf.cli.train_sft``, prompt/response chat lists);
* ``sft_multiturn``: whole episodes as chats (``--data.multiturn``);
* ``next_action``: agent prompts labelled with the expert action and admissible actions (RL stage);
* ``dpo``: agent prompt, chosen = expert, rejected = the build's sampled alternative (DPO control);
* ``sft_choice``: contrast prompt -> bare verdict (SFT-on-choice control);
* ``reflection``: agent prompt -> a model-written rationale + the expert action (Early Experience's
  self-reflection baseline, ``data_tools.reflection``);
* ``online_env``: one row per episode naming the environment task to play live
  (``openrlhf_act/integrations/openrlhf/env_executor.py``, beyond the paper).

The others read trajectories; ``dpo``, ``sft_choice`` and ``reflection`` read a ``data build`` output
directory so they use exactly the pairs the ACT stage saw. With ``--build DIR`` every kind takes that
build's inputs, state settings and split (seed, ratio, mode) from its manifest, so every stage of a
pipeline holds out exactly the same tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_tools.build import manifest_head, sequence_of
from data_tools.cache import SampleCache
from data_tools.pairs import pair_from_json
from data_tools.reflection import (
    NO_RATIONALE,
    ReflectionConfig,
    ReflectionStats,
    items_of,
    reflection_row,
    sample_rationales,
)
from data_tools.splits import eval_groups, split_of
from openrlhf_act.envs.alfworld import task_type_of
from openrlhf_act.envs.base import EnvTask
from openrlhf_act.envs.online_label import OnlineEnvLabel
from openrlhf_act.errors import DataError
from openrlhf_act.files import read_jsonl, write_json, write_jsonl
from openrlhf_act.prompt_budget import (
    DEFAULT_MAX_PROMPT_TOKENS,
    Fitted,
    FittedConfig,
    PromptBudget,
    dropped_prompts,
    fit_agent_prompts,
    prompt_manifest,
)
from openrlhf_act.prompts import DEFAULT_MAX_ADMISSIBLE_IN_PROMPT, action_response, episode_messages, verdict_response
from openrlhf_act.sampling import Sampler
from openrlhf_act.schema import (
    ContrastPair,
    NextActionLabel,
    State,
    Trajectory,
    decode_judgment_label,
    encode_label,
)
from openrlhf_act.states import StateConfig, states_from_trajectory

TRAJECTORY_KINDS = ("sft", "sft_multiturn", "next_action", "online_env")
BUILD_KINDS = ("dpo", "sft_choice", "reflection")
EXPORT_KINDS = TRAJECTORY_KINDS + BUILD_KINDS
PROMPT_KINDS = ("sft", "next_action", "dpo", "sft_choice", "reflection")  # rows with one prompt, fitted to the budget
VerifiedPair = tuple[ContrastPair, dict[str, Any] | None]  # a build's pair and the environment's verdict on it
MANIFEST_SCHEMA = "openrlhf-act/export-manifest/v1"


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def sft_row(fit: Fitted, *, with_thought: bool) -> dict[str, Any]:
    state = fit.state
    thought = state.expert_thought if with_thought else None
    return {
        "prompt": fit.messages,
        "response": _assistant(action_response(state.expert_action, thought)),
        "datasource": state.env,
    }


def next_action_row(fit: Fitted) -> dict[str, Any]:
    state = fit.state
    label = NextActionLabel(
        expert=state.expert_action,
        admissible=state.admissible,
        task_id=state.task_id,
        env=state.env,
        step=state.step,
    )
    return {"prompt": fit.messages, "label": encode_label(label), "datasource": state.env}


def multiturn_row(trajectory: Trajectory, *, with_thought: bool) -> dict[str, Any]:
    turns = [(s.observation, s.action, s.thought if with_thought else None) for s in trajectory.steps]
    return {"messages": episode_messages(trajectory.env, trajectory.task, turns), "datasource": trajectory.env}


def online_env_row(trajectory: Trajectory) -> dict[str, Any]:
    """The episode a trajectory came from, as a label the online executor can replay live.

    ScienceWorld episodes are named by task and variation (``meta`` of collected trajectories, or a
    ``name/v<N>`` task id); ALFWorld episodes by their game file (``meta.game_file``).
    """
    meta = trajectory.meta
    if trajectory.env == "scienceworld":
        task, variation = meta.get("task_name"), meta.get("variation")
        if not isinstance(task, str) or not isinstance(variation, int):
            name, _, suffix = trajectory.task_id.rpartition("/v")
            if not name or not suffix.isdigit():
                raise DataError(
                    f"trajectory {trajectory.task_id!r} names no ScienceWorld task and variation "
                    "(expected meta.task_name/meta.variation or a task id like 'boil/v3')"
                )
            task, variation = name, int(suffix)
        split = meta.get("split") if isinstance(meta.get("split"), str) else None
        label = OnlineEnvLabel(EnvTask("scienceworld", task, variation=variation, split=split))
    elif trajectory.env == "alfworld" and isinstance(meta.get("game_file"), str):
        game = meta["game_file"]
        label = OnlineEnvLabel(EnvTask("alfworld", task_type_of(game), game_file=game))
    else:
        raise DataError(f"trajectory {trajectory.task_id!r}: online episodes exist for scienceworld and alfworld only")
    prompt = [{"role": "user", "content": f"Play the {trajectory.env} episode {trajectory.task_id}: {trajectory.task}"}]
    return {"prompt": prompt, "label": label.encode(), "datasource": trajectory.env}


def state_rows(
    kind: str, states: Sequence[State], budget: PromptBudget, *, with_thought: bool = False
) -> list[dict[str, Any]]:
    """``sft`` / ``next_action`` rows whose agent prompts fit ``budget`` (the others are dropped, counted)."""
    if kind not in ("sft", "next_action"):
        raise ValueError(f"{kind!r} is not a per-state export")
    fits = fit_agent_prompts(budget, states)
    if kind == "sft":
        return [sft_row(fit, with_thought=with_thought) for fit in fits]
    return [next_action_row(fit) for fit in fits]


def build_rows(kind: str, build_dir: Path, budgets: dict[str, PromptBudget]) -> dict[str, list[dict[str, Any]]]:
    """Rows per split for ``dpo`` / ``sft_choice`` from a ``data build`` directory, within ``budgets``."""
    if kind == "dpo":
        return {
            split: _dpo_rows([pair for pair, _ in pairs], budgets[split])
            for split, pairs in _build_pairs(build_dir).items()
        }
    if kind == "sft_choice":
        return {split: _sft_choice_rows(build_dir, split, budgets[split]) for split in ("train", "eval")}
    raise ValueError(f"{kind!r} is not an export from a build directory")


def _build_pairs(build_dir: Path) -> dict[str, list[VerifiedPair]]:
    """The build's pairs per split, each with the environment's verdict when the build verified it."""
    source = build_dir / "pairs.jsonl"
    if not source.exists():
        raise DataError(f"{source} not found: run `openrlhf-act data build --out {build_dir}` first")
    pairs: dict[str, list[VerifiedPair]] = {"train": [], "eval": []}
    for line_no, record in enumerate(read_jsonl(source), 1):
        try:
            pair, split = pair_from_json(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not a pair record ({exc!r})", where=f"{source}:{line_no}") from None
        pairs[split].append((pair, record.get("verified")))
    return pairs


def _dpo_rows(pairs: list[ContrastPair], budget: PromptBudget) -> list[dict[str, Any]]:
    """Chosen = the expert, rejected = each sampled alternative, on the agent prompt they were sampled with."""
    fits = fit_agent_prompts(budget, [pair.state for pair in pairs])
    by_key = {fit.state.key: fit.messages for fit in fits}
    return [
        {
            "prompt": by_key[pair.state.key],
            "chosen": _assistant(action_response(pair.state.expert_action)),
            "rejected": _assistant(action_response(alternative)),
            "datasource": pair.state.env,
        }
        for pair in pairs
        if pair.state.key in by_key
        for alternative in pair.alternatives
    ]


def reflection_rows(
    build_dir: Path,
    budgets: dict[str, PromptBudget],
    config: ReflectionConfig,
    out_dir: Path,
    *,
    seed: int,
    sampler: Sampler | None = None,
    progress: bool | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Rows per split for ``reflection`` and the manifest's record of how they were made. Completions
    are cached in ``out_dir/.cache`` as they arrive, so a rerun resumes without asking again."""
    from tqdm import tqdm

    from data_tools.samplers import make_sampler

    pairs = _build_pairs(build_dir)
    items = {}
    for split, verified_pairs in pairs.items():
        fits = fit_agent_prompts(budgets[split], [pair.state for pair, _ in verified_pairs])
        items[split] = items_of(verified_pairs, {fit.state.key: fit for fit in fits})
    own_sampler = sampler is None
    if sampler is None:
        sampler = make_sampler(config.sampler, **config.options())
    stats = ReflectionStats()
    cache = SampleCache(out_dir / ".cache" / f"reflection-{config.sampler}.jsonl")
    everything = items["train"] + items["eval"]
    try:
        disable = None if progress is None else not progress
        with tqdm(total=len(everything), desc=f"reflect ({config.sampler})", unit="pair", disable=disable) as bar:
            kept = sample_rationales(everything, sampler, cache, config, stats, seed=seed, progress=bar)
        fingerprint = sampler.fingerprint()
    finally:
        cache.close()
        if own_sampler:
            sampler.close()
    print(
        f"reflection: {len(kept)} of {len(everything)} rationales kept; {stats.cached_requests} of "
        f"{stats.requests} requests answered from the cache",
        file=sys.stderr,
    )
    rows = {split: [reflection_row(i, kept[i.key]) for i in items[split] if i.key in kept] for split in items}
    record = {
        "sampler": {"name": config.sampler, "fingerprint": fingerprint},
        "reflection": {
            **stats.to_json(),
            **{
                split: {
                    "asked": len(items[split]),
                    "kept": len(rows[split]),
                    NO_RATIONALE: len(items[split]) - len(rows[split]),
                }
                for split in items
            },
        },
        "drops": dict(sorted(stats.rejected.items())),
    }
    return rows, record


def _sft_choice_rows(build_dir: Path, split: str, budget: PromptBudget) -> list[dict[str, Any]]:
    """The build's contrast prompts -> bare verdicts; prompts over the budget (a smaller one than the
    build's) cannot be trimmed once rendered, so they are dropped and counted."""
    tag = build_settings(build_dir)["verdict_tag"]
    source = build_dir / f"{split}.jsonl"
    if not source.exists():
        raise DataError(f"{source} not found: run `openrlhf-act data build --out {build_dir}` first")
    out = []
    for line_no, row in enumerate(read_jsonl(source), 1):
        try:
            label = decode_judgment_label(row["label"])
        except (DataError, KeyError) as exc:
            raise DataError(f"not a contrast-prompt row ({exc})", where=f"{source}:{line_no}") from None
        if budget.admit(row["prompt"], "contrast") is not None:
            out.append(
                {
                    "prompt": row["prompt"],
                    "response": _assistant(verdict_response(label.answer, tag=tag)),
                    "datasource": row.get("datasource", label.env),
                }
            )
    return out


@dataclass(frozen=True)
class ExportConfig(FittedConfig):
    """Everything that determines an export's rows (recorded in full in its manifest)."""

    kind: str
    inputs: tuple[str, ...] = ()
    build_dir: str | None = None
    input_format: str = "auto"
    env: str | None = None
    on_error: str = "fail"
    seed: int = 0
    eval_ratio: float = 0.1
    split_by: str = "task_id"
    state: StateConfig = field(default_factory=StateConfig)
    max_admissible_in_prompt: int = DEFAULT_MAX_ADMISSIBLE_IN_PROMPT
    with_thought: bool = False
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS
    tokenizer: str | None = None
    reflection: ReflectionConfig | None = None  # kind "reflection": where the rationales come from

    def __post_init__(self) -> None:
        if self.max_prompt_tokens <= 0:
            raise ValueError("--max-prompt-tokens must be positive")
        if (self.kind == "reflection") != (self.reflection is not None):
            raise ValueError("--kind reflection needs a sampler of rationales, and only it takes one")

    @classmethod
    def from_args(cls, args: argparse.Namespace, reflection: ReflectionConfig | None = None) -> ExportConfig:
        """The configuration of ``data export`` (``reflection``: the rationale sampler, kind reflection)."""
        base: dict[str, Any] = {}
        if args.build:
            base = _settings_from_build(Path(args.build))
        elif args.kind in BUILD_KINDS:
            raise ValueError(f"--kind {args.kind} reads a build directory: pass --build DIR")
        inputs = sequence_of(args.input) or tuple(base.get("inputs", ()))
        if not inputs and args.kind not in BUILD_KINDS:
            raise ValueError("nothing to export: pass --input FILE or --build DIR")
        state = base.get("state") or StateConfig(
            window=args.window, max_state_tokens=args.max_state_tokens, max_observation_chars=args.max_observation_chars
        )
        return cls(
            kind=args.kind,
            inputs=inputs,
            build_dir=args.build,
            input_format=base.get("input_format", args.format),
            env=base.get("env", args.input_env),
            on_error=args.on_error,
            seed=base.get("seed", args.seed),
            eval_ratio=base.get("eval_ratio", args.eval_ratio),
            split_by=base.get("split_by", args.split_by),
            state=state,
            max_admissible_in_prompt=base.get("max_admissible_in_prompt", args.max_admissible_in_prompt),
            with_thought=args.with_thought,
            max_prompt_tokens=base.get("max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS)
            if args.max_prompt_tokens is None
            else args.max_prompt_tokens,
            tokenizer=args.tokenizer or base.get("tokenizer"),
            reflection=reflection,
        )


def build_settings(build_dir: Path) -> dict[str, Any]:
    """The configuration a ``data build`` directory was made with (its manifest's ``config``)."""
    manifest_path = build_dir / "manifest.json"
    if not manifest_path.exists():
        raise ValueError(f"{manifest_path} not found: is {build_dir} a `data build` output directory?")
    return json.loads(manifest_path.read_text(encoding="utf-8"))["config"]


def _settings_from_build(build_dir: Path) -> dict[str, Any]:
    """What an export inherits from the build it extends."""
    config = build_settings(build_dir)
    return {
        "inputs": tuple(config["inputs"]),
        "input_format": config["input_format"],
        "env": config["env"],
        "seed": config["seed"],
        "eval_ratio": config["eval_ratio"],
        "split_by": config["split_by"],
        "state": StateConfig(**config["state"]),
        "max_admissible_in_prompt": config["max_admissible_in_prompt"],
        "max_prompt_tokens": config.get("max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS),
        "tokenizer": config.get("tokenizer"),
    }


def export(
    config: ExportConfig, out_dir: Path, *, sampler: Sampler | None = None, progress: bool | None = None
) -> dict[str, Any]:
    """Write ``out_dir/{train,eval}.jsonl`` and the manifest (last); return the manifest. ``sampler``
    (kind reflection) may be injected, else it is made from the config; ``progress`` None shows a bar
    only on a terminal."""
    budgets: dict[str, PromptBudget] = {}
    if config.kind in PROMPT_KINDS:
        budgets["train"] = config.prompt_budget()
        budgets["eval"] = budgets["train"].sibling()
    made: dict[str, Any] = {}
    if config.reflection is not None:
        assert config.build_dir is not None
        rows, made = reflection_rows(
            Path(config.build_dir),
            budgets,
            config.reflection,
            out_dir,
            seed=config.seed,
            sampler=sampler,
            progress=progress,
        )
    elif config.kind in BUILD_KINDS:
        assert config.build_dir is not None
        rows = build_rows(config.kind, Path(config.build_dir), budgets)
    else:
        rows = _trajectory_rows(config, budgets)
    if not rows["train"] and not rows["eval"]:
        raise DataError(no_rows_reason(config, budgets, made.get("drops")))
    write_jsonl(out_dir / "train.jsonl", rows["train"])
    write_jsonl(out_dir / "eval.jsonl", rows["eval"])
    manifest = {
        **manifest_head(MANIFEST_SCHEMA, {**asdict(config), "inputs": list(config.inputs)}, config.inputs),
        "counts": {"rows": {split: len(rows[split]) for split in rows}},
    }
    if budgets:
        manifest["prompt_tokens"] = prompt_manifest(budgets)
        manifest["drops"] = {"prompt_budget": dropped_prompts(budgets.values())}
    if made:  # reflection is a prompt kind: its budgets, and so manifest["drops"], exist
        manifest["sampler"] = made["sampler"]
        manifest["counts"]["reflection"] = made["reflection"]
        manifest["drops"]["reflection"] = made["drops"]
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def no_rows_reason(
    config: ExportConfig, budgets: dict[str, PromptBudget], rejected: dict[str, int] | None = None
) -> str:
    """Why an export made no row at all, and what to do about it (the export then writes nothing but,
    for reflection, its sample cache). ``rejected``: the rationales dropped, by reason."""
    if rejected:
        return (
            f"no reflection row: no rationale ended with the expert action (rejected: "
            f"{', '.join(f'{k} {v}' for k, v in rejected.items())}); check the sampler's model and "
            "--max-tokens, or raise --rounds / --samples-per-round"
        )
    dropped = dropped_prompts(budgets.values())
    if dropped:
        return (
            f"no {config.kind} row: every prompt was dropped as too long for --max-prompt-tokens "
            f"{config.max_prompt_tokens} ({', '.join(f'{k} {v}' for k, v in sorted(dropped.items()))}). Raise "
            "--max-prompt-tokens (and the recipe's PROMPT_MAX_LEN / SFT_MAX_LEN with it) or lower --window"
        )
    source = f"the build in {config.build_dir}" if config.kind in BUILD_KINDS else "the input trajectories"
    return f"no {config.kind} row: {source} hold no usable step or pair; check the build's manifest and rejects"


def _trajectory_rows(config: ExportConfig, budgets: dict[str, PromptBudget]) -> dict[str, list[dict[str, Any]]]:
    from data_tools.readers import read_trajectories

    trajectories = list(
        read_trajectories(list(config.inputs), config.input_format, env=config.env, on_error=config.on_error)
    )
    if not trajectories:
        raise DataError("no trajectories in the input: nothing to export")
    eval_set = eval_groups((t.task_id for t in trajectories), config.eval_ratio, config.seed, config.split_by)
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for trajectory in trajectories:
        split = split_of(trajectory.task_id, eval_set, config.split_by)
        if config.kind == "sft_multiturn":
            rows[split].append(multiturn_row(trajectory, with_thought=config.with_thought))
            continue
        if config.kind == "online_env":
            rows[split].append(online_env_row(trajectory))
            continue
        states = states_from_trajectory(trajectory, config.state)
        rows[split] += state_rows(config.kind, states, budgets[split], with_thought=config.with_thought)
    return rows
