"""Aggregate episode records into per-task and per-split figures, as JSON and Markdown; every
evaluation run's summary files.

Success rate is the share of finished episodes the environment counts as won (ScienceWorld: score
100; ALFWorld: the goal reached; WebShop: purchase reward 1.0). Score is the episode's final score
normalized to 0..100 (ScienceWorld's own scale; ALFWorld 0/100; WebShop reward x 100); negative
ScienceWorld failure scores count as 0. A protocol whose score metric is ``max`` (ETO's ScienceWorld)
scores an episode by the highest score it reached instead, read from its transcript. ``micro`` averages
over episodes, ``macro`` over tasks (the ScienceWorld convention). Errored episodes are counted and
reported, never averaged in. The summary names the run's protocol (None for an ad-hoc selection) and seed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from openrlhf_act.envs.base import normalized_score
from openrlhf_act.files import read_jsonl, write_json, write_text

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


def latest_records(records: Iterable[dict[str, Any]], keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The last record per episode (a retry or resumed run supersedes an earlier error), in
    ``keys`` order when given (episodes outside ``keys`` are left out)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        previous = latest.get(record["episode"])
        if previous is None or previous.get("status") != "ok" or record.get("status") == "ok":
            latest[record["episode"]] = record
    if keys is None:
        return list(latest.values())
    return [latest[k] for k in keys if k in latest]


OVER_BUDGET = "prompt_over_budget"  # an episode's status: a step's prompt could not fit --max-prompt-tokens


Score = Callable[[dict[str, Any]], float]  # a finished episode's record -> its score on 0..1


def _final_score(record: dict[str, Any]) -> float:
    return record["normalized_score"]


def _max_score(env: str | None) -> Score:
    """The highest score an episode reached (the last step's score too), on 0..1."""
    from openrlhf_act.envs.registry import env_class

    scale = env_class(env or "").score_scale

    def score(record: dict[str, Any]) -> float:
        reached = [record["score"], *(step.get("score", 0.0) for step in record.get("transcript", ()))]
        return normalized_score(max(reached), scale)

    return score


def _episode_figures(records: list[dict[str, Any]], score: Score = _final_score) -> dict[str, Any]:
    """Success rate, normalized score, steps and bad actions per step of finished episodes; errors counted."""
    done = [r for r in records if r.get("status") == "ok"]
    steps = sum(r["steps"] for r in done)
    n = len(done)
    return {
        "episodes": len(records),
        "finished": n,
        "errors": len(records) - n,
        "success_rate": 100.0 * sum(r["won"] for r in done) / n if n else None,
        "mean_score": 100.0 * sum(score(r) for r in done) / n if n else None,
        "mean_steps": steps / n if n else None,
        "invalid_per_step": sum(r["invalid_actions"] for r in done) / steps if steps else None,
        "unparseable_per_step": sum(r["unparseable"] for r in done) / steps if steps else None,
    }


def _macro(tasks: dict[str, dict[str, Any]], key: str) -> float | None:
    values = [t[key] for t in tasks.values() if t[key] is not None]
    return sum(values) / len(values) if values else None


def summarize_episodes(
    records: Iterable[dict[str, Any]], *, config: dict[str, Any], keys: Sequence[str] | None = None
) -> dict[str, Any]:
    """``{"kind": "episodes", "env", "policy", "protocol", "seed", "score_metric", "splits": {split: {"micro",
    "macro", "tasks"}}}``; ``config`` is the run's ``run.json``."""
    chosen = latest_records(records, keys)
    protocol = config.get("protocol")
    metric = protocol["score_metric"] if protocol else "final"
    score = _max_score(config.get("env")) if metric == "max" else _final_score
    by_split: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for record in chosen:
        by_split[record.get("split") or "-"][record["task"]].append(record)
    splits = {}
    for split, tasks in sorted(by_split.items()):
        per_task = {task: _episode_figures(rows, score) for task, rows in sorted(tasks.items())}
        everything = [r for rows in tasks.values() for r in rows]
        splits[split] = {
            "micro": _episode_figures(everything, score),
            "macro": {k: _macro(per_task, k) for k in ("success_rate", "mean_score")},
            "tasks": per_task,
        }
    summary = {
        "kind": "episodes",
        "env": config.get("env"),
        "policy": config.get("policy"),
        "protocol": protocol,
        "seed": config.get("seed"),
        "score_metric": metric,
        "episodes": len(chosen),
        "errors": sum(r.get("status") != "ok" for r in chosen),
        "splits": splits,
        **prompting_of(config),
    }
    if config.get("max_prompt_tokens") is not None:
        summary["max_prompt_tokens"] = config["max_prompt_tokens"]
        summary["prompt_over_budget"] = sum(r.get("status") == OVER_BUDGET for r in chosen)
    return summary


def prompting_of(config: dict[str, Any]) -> dict[str, Any]:
    """``{"prompting": {"thinking": "on" | "off"}}`` for a run whose policy set it, else ``{}``: a
    summary key ``eval report`` keeps runs apart by (the thinking on / off prompting baselines)."""
    kwargs = (config.get("policy") or {}).get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict) or "enable_thinking" not in kwargs:
        return {}
    return {"prompting": {"thinking": "on" if kwargs["enable_thinking"] else "off"}}


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def title(what: str, policy: dict[str, Any] | None) -> str:
    """The first line of a run's Markdown summary: what was measured, with which policy."""
    return f"# {what}: {', '.join(f'{k}={v}' for k, v in (policy or {}).items())}"


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, text_columns: int = 1) -> list[str]:
    """The lines of a Markdown table: the first ``text_columns`` columns left-aligned, figures right-aligned."""
    align = ["---"] * text_columns + ["---:"] * (len(columns) - text_columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]


def write_summary(out_dir: Path, summary: dict[str, Any], markdown: str) -> None:
    """A run's figures: ``summary.json`` for tools (``eval report``), ``summary.md`` for people."""
    write_json(out_dir / SUMMARY_JSON, summary)
    write_text(out_dir / SUMMARY_MD, markdown)


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown tables, one per split."""
    lines = [title(f"{summary.get('env')} episodes", summary.get("policy")), ""]
    protocol = summary.get("protocol")
    if protocol:
        lines += [
            f"Protocol **{protocol['name']}** {protocol['split']} ({protocol['episodes']} episodes; score: "
            f"{'highest reached' if protocol['score_metric'] == 'max' else 'final'}).",
            "",
        ]
    else:
        lines += ["Ad-hoc episode selection (no protocol).", ""]
    over_budget = summary.get("prompt_over_budget", 0)
    if summary.get("errors", 0) > over_budget:
        env_errors = summary["errors"] - over_budget
        lines += [f"**{env_errors} episode(s) ended in an environment error** (see episodes.jsonl).", ""]
    if over_budget:
        lines += [
            f"**{over_budget} episode(s) ended at a step whose prompt could not fit --max-prompt-tokens "
            f"{summary.get('max_prompt_tokens')}** "
            "(status prompt_over_budget in episodes.jsonl).",
            "",
        ]
    for split, figures in summary["splits"].items():
        micro, macro = figures["micro"], figures["macro"]
        lines += [
            f"## split {split}: success {fmt(micro['success_rate'])}%, score {fmt(micro['mean_score'])} "
            f"(macro over tasks: {fmt(macro['success_rate'])}% / {fmt(macro['mean_score'])})",
            "",
        ]
        columns = ("task", "episodes", "errors", "success %", "score", "steps", "invalid/step", "unparseable/step")
        lines += markdown_table(columns, (_episode_cells(task, t) for task, t in figures["tasks"].items()))
        lines.append("")
    return "\n".join(lines)


def _episode_cells(task: str, t: dict[str, Any]) -> tuple[Any, ...]:
    rates = (fmt(t["success_rate"]), fmt(t["mean_score"]), fmt(t["mean_steps"], 1))
    return (task, t["finished"], t["errors"], *rates, fmt(t["invalid_per_step"], 3), fmt(t["unparseable_per_step"], 3))


def episode_scores(directory: Path, summary: dict[str, Any]) -> list[float]:
    """Normalized (0..100) scores of a run's finished episodes, by the run's score metric."""
    score = _max_score(summary.get("env")) if summary.get("score_metric") == "max" else _final_score
    records = latest_records(read_jsonl(directory / "episodes.jsonl", log=True))
    return [100.0 * score(r) for r in records if r.get("status") == "ok"]
