"""Data for the other stages, from the same trajectories and the same task split as ACT data.

* ``sft``: agent prompt -> expert action (``openrlhf.cli.train_sft``, prompt/response chat lists);
* ``sft_multiturn``: whole episodes as chats (``--data.multiturn``);
* ``next_action``: agent prompts labelled with the expert action and admissible actions (RL stage);
* ``dpo``: agent prompt, chosen = expert, rejected = the build's sampled alternative (DPO control);
* ``sft_choice``: contrast prompt -> bare verdict (SFT-on-choice control);
* ``online_env``: one row per episode naming the environment task to play live
  (``openrlhf_act/integrations/openrlhf/env_executor.py``, beyond the paper).

The others read trajectories; ``dpo`` and ``sft_choice`` read a ``data build`` output directory so
they use exactly the pairs the ACT stage saw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_tools.pairs import pair_from_json
from openrlhf_act.errors import DataError
from openrlhf_act.files import read_jsonl
from openrlhf_act.prompt_budget import Fitted, PromptBudget, fit_agent_prompts
from openrlhf_act.prompts import action_response, episode_messages, verdict_response
from openrlhf_act.schema import (
    ContrastPair,
    NextActionLabel,
    State,
    Trajectory,
    decode_judgment_label,
    encode_label,
)

TRAJECTORY_KINDS = ("sft", "sft_multiturn", "next_action", "online_env")
BUILD_KINDS = ("dpo", "sft_choice")
EXPORT_KINDS = TRAJECTORY_KINDS + BUILD_KINDS
PROMPT_KINDS = ("sft", "next_action", "dpo", "sft_choice")  # rows with one prompt, fitted to the prompt budget


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
        label = {"kind": "online_env", "env": "scienceworld", "task": task, "variation": variation}
        if isinstance(meta.get("split"), str):
            label["split"] = meta["split"]
    elif trajectory.env == "alfworld" and isinstance(meta.get("game_file"), str):
        label = {"kind": "online_env", "env": "alfworld", "game": meta["game_file"]}
    else:
        raise DataError(f"trajectory {trajectory.task_id!r}: online episodes exist for scienceworld and alfworld only")
    prompt = [{"role": "user", "content": f"Play the {trajectory.env} episode {trajectory.task_id}: {trajectory.task}"}]
    return {"prompt": prompt, "label": json.dumps(label, separators=(",", ":")), "datasource": trajectory.env}


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
        return {split: _dpo_rows(pairs, budgets[split]) for split, pairs in _build_pairs(build_dir).items()}
    if kind == "sft_choice":
        return {split: _sft_choice_rows(build_dir, split, budgets[split]) for split in ("train", "eval")}
    raise ValueError(f"{kind!r} is not an export from a build directory")


def _build_pairs(build_dir: Path) -> dict[str, list[ContrastPair]]:
    source = build_dir / "pairs.jsonl"
    if not source.exists():
        raise DataError(f"{source} not found: run `openrlhf-act data build --out {build_dir}` first")
    pairs: dict[str, list[ContrastPair]] = {"train": [], "eval": []}
    for record in read_jsonl(source):
        pair, split = pair_from_json(record)
        pairs[split].append(pair)
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


def _sft_choice_rows(build_dir: Path, split: str, budget: PromptBudget) -> list[dict[str, Any]]:
    """The build's contrast prompts -> bare verdicts; prompts over the budget (a smaller one than the
    build's) cannot be trimmed once rendered, so they are dropped and counted."""
    manifest = build_dir / "manifest.json"
    tag = json.loads(manifest.read_text(encoding="utf-8"))["config"]["verdict_tag"] if manifest.exists() else "answer"
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
