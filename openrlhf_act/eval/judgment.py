"""``eval judgment``: how well a model judges held-out contrast pairs (ACT's own skill), from an ACT
``eval.jsonl`` written by ``openrlhf-act data build``.

Every row is asked as written and scored by the ACT reward's own parser
(:func:`openrlhf_act.rewards.judgment.judgment_reward`). Reported: accuracy, malformed rate, the share
of verdicts naming the first candidate, accuracy when gold is first vs second, and swap consistency:
the same question with the candidates in reverse order must name the same *action*. A pair that the
data already holds in both orders (rows sharing a ``pair_id``) is checked against its partner row;
any other row is asked again with its candidate block in reverse order
(:func:`openrlhf_act.prompts.reverse_candidates`, the swap the consistency executor makes in training).

``rationale`` is the paper's judgment analysis (86.5 / 80.75 / 50.75 on its 400 held-out pairs):
``free`` lets the model reason (the prompt asks for reasoning, then the verdict), ``none`` asks for the
verdict alone and scores a response that reasons as malformed (the no-reasoning control's rule),
``injected-wrong`` pre-fills the reply with a closed rationale arguing for a wrong candidate
(:func:`openrlhf_act.prompts.argued_rationale`) and scores the verdict the model writes after it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from openrlhf_act.actions import Completion
from openrlhf_act.errors import UsageError
from openrlhf_act.eval.next_action import task_of
from openrlhf_act.eval.offline import (
    PREDICTIONS_FILE,
    Row,
    ask_missing,
    base_config,
    pct,
    read_rows,
)
from openrlhf_act.eval.policies import Policy, stable_seed
from openrlhf_act.eval.summary import fmt, markdown_table, prompting_of, title, write_summary
from openrlhf_act.files import open_run_dir
from openrlhf_act.prompts import argued_rationale, reverse_candidates, with_judge_reasoning
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.rewards.judgment import judgment_reward
from openrlhf_act.sampling import SampleRequest
from openrlhf_act.schema import JudgmentLabel, decode_judgment_label, encode_label
from openrlhf_act.verdict import parse_verdict

INJECTED = "injected-wrong"
_RATIONALE_MEANING = {
    "free": "the model reasons, then gives its verdict",
    "none": "the verdict alone; a response that reasons counts as malformed",
    INJECTED: "the reply starts with a rationale arguing for a wrong candidate",
}
RATIONALES = tuple(_RATIONALE_MEANING)
Messages = list[dict[str, str]]


def _partner(row: Row, rows_by_pair: dict[str, list[Row]]) -> Row | None:
    """A row of the same pair whose candidates are this row's in reverse order."""
    if not row.label.pair_id:
        return None
    for other in rows_by_pair.get(row.label.pair_id, []):
        if other.index != row.index and tuple(other.label.candidates) == tuple(reversed(row.label.candidates)):
            return other
    return None


JUDGMENT_COLUMNS = (
    "pairs",
    "accuracy %",
    "malformed %",
    "picks first %",
    "acc. gold first %",
    "acc. gold second %",
    "swap consistent %",
)


def _judgment_figures(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, malformed share, position bias and swap consistency of judged rows (percentages)."""
    n = len(records)
    formed = [r for r in records if not r["malformed"]]
    gold_first = [r for r in records if r["answer"] == 1]
    gold_later = [r for r in records if r["answer"] != 1]
    swapped = [r for r in records if r.get("swap_choice") is not None and not r["malformed"]]
    figures = {
        "rows": n,
        "accuracy": pct(sum(r["correct"] for r in records), n),
        "malformed": pct(n - len(formed), n),
        "pred_first": pct(sum(r["choice"] == 1 for r in formed), len(formed)),
        "gold_first": pct(len(gold_first), n),
        "accuracy_gold_first": pct(sum(r["correct"] for r in gold_first), len(gold_first)),
        "accuracy_gold_second": pct(sum(r["correct"] for r in gold_later), len(gold_later)),
        "swap_checked": len(swapped),
        "swap_consistency": pct(sum(r["consistent"] for r in swapped), len(swapped)),
        "swap_malformed": pct(
            sum(r.get("swap_malformed", False) for r in records), sum("swap_malformed" in r for r in records)
        ),
    }
    if any("followed" in r for r in records):  # --rationale injected-wrong: verdicts naming the argued action
        figures["followed_rationale"] = pct(sum(r["followed"] for r in records), n)
    return figures


def run_judgment(
    data: str | Path,
    policy: Policy,
    out_dir: str | Path,
    *,
    swap: bool = True,
    rationale: str = "free",
    chunk_size: int = 256,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Ask every row (and its swapped twin), score, write and return the summary."""
    if rationale not in RATIONALES:
        raise UsageError(f"unknown --rationale {rationale!r}; choose one of {', '.join(RATIONALES)}")
    out = Path(out_dir)
    rows = read_rows(data, decode_judgment_label, limit)
    config = {**base_config("judgment", data, policy, seed), "swap": swap}
    if rationale != "free":  # absent for free: run directories of earlier versions still resume
        config["rationale"] = rationale
    open_run_dir(out, config)
    tag = build_verdict_tag(data)
    reward_config = RewardConfig(verdict_tag=tag)
    rows_by_pair: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        rows_by_pair[row.label.pair_id].append(row)

    requests: list[tuple[str, SampleRequest]] = []
    asked: dict[str, tuple[Row, JudgmentLabel, str]] = {}  # request id -> (row, label scored, pre-filled reply)
    unswappable = 0
    for row in rows:
        key = f"{row.label.pair_id}#{row.index}"
        messages, label, prefill = _question(row, row.messages, row.label, rationale, tag)
        asked[f"{row.index}"] = (row, label, prefill)
        requests.append((f"{row.index}", _request(key, messages, seed, row.index, row.label.expert)))
        if not swap or _partner(row, rows_by_pair) is not None:
            continue
        swapped = reverse_candidates(row.messages[-1]["content"], row.label)
        if swapped is None:
            unswappable += 1
            continue
        content, swapped_label = swapped
        messages = [*row.messages[:-1], {**row.messages[-1], "content": content}]
        messages, label, prefill = _question(row, messages, swapped_label, rationale, tag)
        asked[f"{row.index}:swap"] = (row, label, prefill)
        requests.append(
            (f"{row.index}:swap", _request(key + ":swap", messages, seed, -1 - row.index, row.label.expert))
        )

    def record(rid: str, completion: Completion) -> dict[str, Any]:
        row, label, prefill = asked[rid]
        response, truncated = prefill + completion.response, completion.truncated
        result = judgment_reward(response, encode_label(label), reward_config, truncated=truncated)
        verdict = parse_verdict(
            response,
            len(label.candidates),
            tag=tag,
            truncated=truncated,
            candidates=label.candidates,
            bare=label.reasoning == "none",
        )
        return {
            "row": row.index,
            "response": completion.text,
            "finish_reason": completion.finish_reason,
            "choice": verdict.choice,
            "reason": verdict.reason,
            "correct": bool(result.score),
            "reward": result.reward,
            **({"argued": _wrong_index(label)} if prefill else {}),
        }

    answers = ask_missing(
        policy, requests, out / PREDICTIONS_FILE, record, chunk_size=chunk_size, progress=progress, desc="judgment"
    )
    records = [_row_record(row, answers, rows_by_pair, swap) for row in rows]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[task_of(rec["task_id"])].append(rec)
    summary = {
        "kind": "judgment",
        "policy": config["policy"],
        "data": config["data"],
        "rationale": rationale,
        **prompting_of(config),
        "unswappable_rows": unswappable,
        "overall": _judgment_figures(records),
        "tasks": {task: _judgment_figures(rs) for task, rs in sorted(groups.items())},
    }
    write_summary(out, summary, markdown(summary))
    return summary


def build_verdict_tag(data: str | Path) -> str:
    """The verdict tag of the build that wrote ``data`` (its ``manifest.json`` beside it; ``data build
    --verdict-tag``), so rows built with another tag are not all scored malformed; ``answer`` otherwise."""
    manifest = Path(data).parent / "manifest.json"
    if manifest.is_file():
        tag = json.loads(manifest.read_text(encoding="utf-8")).get("config", {}).get("verdict_tag")
        if isinstance(tag, str) and tag:
            return tag
    return RewardConfig().verdict_tag


def _question(
    row: Row, messages: Messages, label: JudgmentLabel, rationale: str, tag: str
) -> tuple[Messages, JudgmentLabel, str]:
    """The chat asked under ``rationale``, the label it is scored with (``reasoning: none`` makes the
    reward refuse reasoning) and the reply's pre-filled start ("" unless ``injected-wrong``)."""
    reasoning = "none" if rationale == "none" else "free"
    content = messages[-1]["content"]
    rewritten = with_judge_reasoning(content, reasoning, tag=tag)
    if rewritten is None:
        if rationale != "free":
            raise UsageError(
                f"row {row.index + 1}: its prompt does not end with the judgment instruction `data build` writes, "
                f"so --rationale {rationale} cannot change what it asks for"
            )
        rewritten = content
    messages = [*messages[:-1], {**messages[-1], "content": rewritten}]
    prefill = argued_rationale(label.candidates, _wrong_index(label)) if rationale == INJECTED else ""
    if prefill:
        messages.append({"role": "assistant", "content": prefill})
    return messages, replace(label, reasoning=reasoning), prefill


def _wrong_index(label: JudgmentLabel) -> int:
    """The candidate an injected rationale argues for: the first one that is not the expert's."""
    return next(i for i in range(1, len(label.candidates) + 1) if i != label.answer)


def _request(key: str, messages: list[dict[str, str]], seed: int, salt: int, expert: str) -> SampleRequest:
    return SampleRequest(
        key=key, messages=messages, n=1, seed=stable_seed(seed, key, salt), admissible=None, expert=expert
    )


def _row_record(row: Row, answers: dict[str, dict[str, Any]], rows_by_pair: dict[str, list[Row]], swap: bool):
    answer = answers[str(row.index)]
    candidates = row.label.candidates
    record = {
        "row": row.index,
        "task_id": row.label.task_id,
        "pair_id": row.label.pair_id,
        "answer": row.label.answer,
        "choice": answer["choice"],
        "malformed": answer["choice"] is None,
        "correct": answer["correct"],
    }
    if "argued" in answer:
        record["followed"] = answer["choice"] == answer["argued"]
    if not swap:
        return record
    partner = _partner(row, rows_by_pair)
    twin = answers.get(str(partner.index)) if partner is not None else answers.get(f"{row.index}:swap")
    if twin is None:
        return record
    record["swap_choice"] = twin["choice"]
    record["swap_malformed"] = twin["choice"] is None
    reversed_candidates = tuple(reversed(candidates))
    record["consistent"] = (
        answer["choice"] is not None
        and twin["choice"] is not None
        and candidates[answer["choice"] - 1] == reversed_candidates[twin["choice"] - 1]
    )
    return record


def judgment_cells(figures: dict[str, Any]) -> tuple[Any, ...]:
    """One row of figures under :data:`JUDGMENT_COLUMNS` (a run's summary and ``eval report`` show the same)."""
    keys = ("accuracy", "malformed", "pred_first", "accuracy_gold_first", "accuracy_gold_second", "swap_consistency")
    return (figures["rows"], *(fmt(figures[key]) for key in keys))


def markdown(summary: dict[str, Any]) -> str:
    o = summary["overall"]
    rationale = summary.get("rationale", "free")
    followed = (
        f"; verdicts following the injected rationale {fmt(o['followed_rationale'])}%"
        if "followed_rationale" in o
        else ""
    )
    lines = [
        title("judgment accuracy", summary["policy"]),
        "",
        f"rationale: {rationale} ({_RATIONALE_MEANING[rationale]})",
        "",
        f"{o['rows']} pairs: accuracy {fmt(o['accuracy'])}%, malformed {fmt(o['malformed'])}%, "
        f"first-position verdicts {fmt(o['pred_first'])}% (gold first in {fmt(o['gold_first'])}%), "
        f"swap consistency {fmt(o['swap_consistency'])}% over {o['swap_checked']} pairs{followed}",
        "",
    ]
    rows = ((task, *judgment_cells(t)) for task, t in summary["tasks"].items())
    return "\n".join(lines + markdown_table(("task", *JUDGMENT_COLUMNS), rows)) + "\n"
