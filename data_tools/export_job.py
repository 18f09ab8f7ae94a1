"""``openrlhf-act data export``: write one export kind to ``OUT/{train,eval}.jsonl`` + a manifest.

With ``--build DIR`` the export takes that build's inputs, state settings and split (seed, ratio,
mode) from its manifest, so every stage of a pipeline holds out exactly the same tasks.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_tools.build import sequence_of
from data_tools.exports import BUILD_KINDS, PROMPT_KINDS, build_rows, multiturn_row, online_env_row, state_rows
from data_tools.splits import eval_groups, split_of
from openrlhf_act import __version__
from openrlhf_act.errors import DataError
from openrlhf_act.files import sha256_file, write_json, write_jsonl
from openrlhf_act.prompt_budget import (
    DEFAULT_MAX_PROMPT_TOKENS,
    FittedConfig,
    PromptBudget,
    dropped_prompts,
    prompt_manifest,
)
from openrlhf_act.prompts import DEFAULT_MAX_ADMISSIBLE_IN_PROMPT
from openrlhf_act.states import StateConfig, states_from_trajectory


@dataclass(frozen=True)
class ExportConfig(FittedConfig):
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

    def __post_init__(self) -> None:
        if self.max_prompt_tokens <= 0:
            raise ValueError("--max-prompt-tokens must be positive")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ExportConfig:
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
        )


def _settings_from_build(build_dir: Path) -> dict[str, Any]:
    manifest_path = build_dir / "manifest.json"
    if not manifest_path.exists():
        raise ValueError(f"{manifest_path} not found: is {build_dir} a `data build` output directory?")
    config = json.loads(manifest_path.read_text(encoding="utf-8"))["config"]
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


def run_export_job(config: ExportConfig, out_dir: Path) -> dict[str, Any]:
    budgets: dict[str, PromptBudget] = {}
    if config.kind in PROMPT_KINDS:
        budgets["train"] = config.prompt_budget()
        budgets["eval"] = budgets["train"].sibling()
    if config.kind in BUILD_KINDS:
        assert config.build_dir is not None
        rows = build_rows(config.kind, Path(config.build_dir), budgets)
    else:
        rows = _trajectory_rows(config, budgets)
    if not rows["train"] and not rows["eval"]:
        raise DataError(no_rows_reason(config, budgets))
    write_jsonl(out_dir / "train.jsonl", rows["train"])
    write_jsonl(out_dir / "eval.jsonl", rows["eval"])
    manifest = {
        "schema": "openrlhf-act/export-manifest/v1",
        "package": {"name": "openrlhf-act", "version": __version__},
        "config": {**asdict(config), "inputs": list(config.inputs)},
        "inputs": [{"path": p, "sha256": sha256_file(p) if Path(p).is_file() else None} for p in config.inputs],
        "counts": {"rows": {split: len(rows[split]) for split in rows}},
    }
    if budgets:
        manifest["prompt_tokens"] = prompt_manifest(budgets)
        manifest["drops"] = {"prompt_budget": dropped_prompts(budgets.values())}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def no_rows_reason(config: ExportConfig, budgets: dict[str, PromptBudget]) -> str:
    """Why an export made no row at all, and what to do about it (the export then writes nothing)."""
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
