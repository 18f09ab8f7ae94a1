"""``eval next-action``: next-action accuracy on held-out expert states (the paper's v1 ScienceWorld
metric), from an ``eval.jsonl`` written by ``openrlhf-act data export --kind next_action``.

Each prompt is answered once; the response is scored by the RL stage's own reward
(:func:`openrlhf_act.rewards.next_action.next_action_reward`): accuracy is the share of exact matches
with the expert action after normalization. Admissible-but-different and unparseable answers are
reported separately, overall, per environment and per task.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from openrlhf_act.actions import Completion, read_action
from openrlhf_act.eval.offline import (
    PREDICTIONS_FILE,
    ask_missing,
    base_config,
    pct,
    read_rows,
)
from openrlhf_act.eval.policies import Policy, stable_seed
from openrlhf_act.eval.summary import fmt, markdown_table, prompting_of, title, write_summary
from openrlhf_act.files import open_run_dir
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.rewards.next_action import next_action_reward
from openrlhf_act.sampling import SampleRequest
from openrlhf_act.schema import decode_next_action_label


def task_of(task_id: str) -> str:
    """``find-animal/v3`` -> ``find-animal``: figures are per task, not per variation or game."""
    return task_id.split("/", 1)[0] or "-"


def _next_action_figures(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Exact, admissible and unparseable shares (percentages) and the mean reward of answered states."""
    n = len(records)
    return {
        "rows": n,
        "accuracy": pct(sum(r["correct"] for r in records), n),
        "admissible": pct(sum(r["admissible"] for r in records), n),
        "malformed": pct(sum(r["malformed"] for r in records), n),
        "mean_reward": sum(r["reward"] for r in records) / n if n else None,
    }


def run_next_action(
    data: str | Path,
    policy: Policy,
    out_dir: str | Path,
    *,
    chunk_size: int = 256,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Answer and score every row of ``data``; write and return the summary."""
    out = Path(out_dir)
    rows = read_rows(data, decode_next_action_label, limit)
    config = base_config("next_action", data, policy, seed)
    open_run_dir(out, config)
    reward_config = RewardConfig()
    by_id = {str(r.index): r for r in rows}

    def record(rid: str, completion: Completion) -> dict[str, Any]:
        row = by_id[rid]
        response, truncated = completion.response, completion.truncated
        result = next_action_reward(response, row.raw_label, reward_config, truncated=truncated)
        return {
            "row": row.index,
            "task_id": row.label.task_id,
            "env": row.label.env,
            "step": row.label.step,
            "expert": row.label.expert,
            "response": completion.text,
            "finish_reason": completion.finish_reason,
            "action": read_action(response, admissible=row.label.admissible, truncated=truncated).action,
            "reward": result.reward,
            "correct": bool(result.score),
            "admissible": bool(result.logs["admissible"]),
            "malformed": bool(result.logs["malformed"]),
        }

    requests = [
        (
            str(r.index),
            SampleRequest(
                key=f"{r.label.task_id}#{r.label.step}",
                messages=r.messages,
                n=1,
                seed=stable_seed(seed, r.index),
                admissible=r.label.admissible,
                expert=r.label.expert,
            ),
        )
        for r in rows
    ]
    done = ask_missing(
        policy, requests, out / PREDICTIONS_FILE, record, chunk_size=chunk_size, progress=progress, desc="next action"
    )
    records = [done[str(r.index)] for r in rows]
    groups: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        groups[rec["env"] or "-"][task_of(rec["task_id"])].append(rec)
    summary = {
        "kind": "next_action",
        "policy": config["policy"],
        "data": config["data"],
        **prompting_of(config),
        "overall": _next_action_figures(records),
        "envs": {
            env: {
                "overall": _next_action_figures([r for rs in tasks.values() for r in rs]),
                "tasks": {t: _next_action_figures(rs) for t, rs in sorted(tasks.items())},
            }
            for env, tasks in sorted(groups.items())
        },
    }
    write_summary(out, summary, markdown(summary))
    return summary


def markdown(summary: dict[str, Any]) -> str:
    overall = summary["overall"]
    lines = [
        title("next-action accuracy", summary["policy"]),
        "",
        f"{overall['rows']} states: accuracy {fmt(overall['accuracy'])}%, admissible {fmt(overall['admissible'])}%, "
        f"unparseable {fmt(overall['malformed'])}%",
        "",
    ]
    rows = (
        (env, task, t["rows"], fmt(t["accuracy"]), fmt(t["admissible"]), fmt(t["malformed"]))
        for env, figures in summary["envs"].items()
        for task, t in figures["tasks"].items()
    )
    columns = ("env", "task", "states", "accuracy %", "admissible %", "unparseable %")
    return "\n".join(lines + markdown_table(columns, rows, text_columns=2)) + "\n"
