"""Contrast pairs -> contrast-prompt rows (the data contract of ACT_METHOD.md, section 4b).

Gold positions are exactly balanced within each split: for M pairs and K candidates the expert sits
at each position ``M // K`` or ``M // K + 1`` times (exactly M/K when K divides M), assigned by a
seeded shuffle. "Both orders" emits every pair once per gold position, linked by ``pair_id``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from openrlhf_act.prompt_budget import Messages, PromptBudget
from openrlhf_act.prompts import judgment_frame
from openrlhf_act.schema import ContrastPair, JudgmentLabel, State, encode_label


def state_to_json(state: State) -> dict[str, Any]:
    return {
        "task_id": state.task_id,
        "env": state.env,
        "task": state.task,
        "history": [list(turn) for turn in state.history],
        "observation": state.observation,
        "expert_action": state.expert_action,
        "step": state.step,
        "admissible": list(state.admissible) if state.admissible is not None else None,
        "expert_thought": state.expert_thought,
        "omitted_turns": state.omitted_turns,
    }


def state_from_json(d: dict[str, Any]) -> State:
    return State(
        task_id=d["task_id"],
        env=d["env"],
        task=d["task"],
        history=tuple((o, a) for o, a in d["history"]),
        observation=d["observation"],
        expert_action=d["expert_action"],
        step=d["step"],
        admissible=tuple(d["admissible"]) if d.get("admissible") is not None else None,
        expert_thought=d.get("expert_thought"),
        omitted_turns=d.get("omitted_turns", 0),
    )


def pair_to_json(pair: ContrastPair, split: str, verified: dict[str, Any] | None = None) -> dict[str, Any]:
    """``verified``: the environment's verdict on the alternatives, when the build verified them."""
    out = {"split": split, "state": state_to_json(pair.state), "alternatives": list(pair.alternatives)}
    if verified is not None:
        out["verified"] = verified
    return out


def pair_from_json(d: dict[str, Any]) -> tuple[ContrastPair, str]:
    return ContrastPair(state_from_json(d["state"]), tuple(d["alternatives"])), d["split"]


def balanced_positions(count: int, k: int, rng: random.Random) -> list[int]:
    """``count`` gold positions (0-based) with every position used equally often (+-1)."""
    positions = [i % k for i in range(count)]
    rng.shuffle(positions)
    return positions


def candidates_with_gold_at(pair: ContrastPair, position: int) -> tuple[str, ...]:
    others = list(pair.alternatives)
    others.insert(position, pair.state.expert_action)
    return tuple(others)


def contrast_row(
    pair: ContrastPair,
    position: int,
    prompt: Messages,
    verified: dict[str, Any] | None = None,
    reasoning: str = "free",
) -> dict[str, Any]:
    """The row of ``pair`` with the expert at ``position``; ``prompt`` is its fitted judgment prompt;
    ``verified`` goes into the label (the environment's verdict on the alternatives), and so does
    ``reasoning``, what the prompt asks for (the reward enforces "none")."""
    state = pair.state
    label = JudgmentLabel(
        answer=position + 1,
        candidates=candidates_with_gold_at(pair, position),
        expert=state.expert_action,
        pair_id=state.key,
        task_id=state.task_id,
        env=state.env,
        step=state.step,
        verified=verified,
        reasoning=reasoning,
    )
    return {"prompt": prompt, "label": encode_label(label), "datasource": state.env}


def fitted_contrast_rows(
    placed: Sequence[tuple[ContrastPair, int]],
    budget: PromptBudget,
    tag: str,
    verified: Mapping[str, dict[str, Any]] | None = None,
    reasoning: str = "free",
) -> list[dict[str, Any]]:
    """Rows for (pair, gold position) within ``budget``; prompts that cannot fit are dropped (counted).
    ``verified``: the environment's verdicts by state key, for the labels; ``reasoning``: what the
    prompts ask for (``prompts.JUDGE_REASONING``)."""
    frames = [
        (p.state, judgment_frame(p.state.env, candidates_with_gold_at(p, pos), tag=tag, reasoning=reasoning))
        for p, pos in placed
    ]
    fits = budget.fit_all(frames)
    verified = verified or {}
    return [
        contrast_row(p, pos, f.messages, verified.get(p.state.key), reasoning)
        for (p, pos), f in zip(placed, fits)
        if f is not None
    ]


def contrast_rows(
    pairs: Sequence[ContrastPair],
    *,
    seed: int,
    split: str,
    both_orders: bool = False,
    tag: str = "answer",
    budget: PromptBudget | None = None,
    verified: Mapping[str, dict[str, Any]] | None = None,
    reasoning: str = "free",
) -> list[dict[str, Any]]:
    """Rows for one split, in a seeded shuffled order (mixes tasks for ``--data.max_samples`` users).

    Pairs whose prompt cannot fit ``budget`` at all go before gold positions are assigned, so the
    positions stay exactly balanced. ``verified``: the environment's verdicts by state key, for the labels.
    """
    budget = budget or PromptBudget()
    rng = random.Random(f"rows:{seed}:{split}")
    if not pairs:
        return []
    k = len(pairs[0].alternatives) + 1
    if any(len(p.alternatives) + 1 != k for p in pairs):
        raise ValueError("all pairs of a split must have the same number of candidates")
    pairs = [p for p in pairs if _can_fit(p, budget, tag, reasoning)]
    if both_orders:
        placed = [(p, pos) for p in pairs for pos in range(k)]
    else:
        placed = list(zip(pairs, balanced_positions(len(pairs), k, rng)))
    rows = fitted_contrast_rows(placed, budget, tag, verified, reasoning)
    rng.shuffle(rows)
    return rows


def _can_fit(pair: ContrastPair, budget: PromptBudget, tag: str, reasoning: str) -> bool:
    frame = judgment_frame(pair.state.env, candidates_with_gold_at(pair, 0), tag=tag, reasoning=reasoning)
    if budget.can_fit(pair.state, frame):
        return True
    budget.drop(frame.kind)
    return False
