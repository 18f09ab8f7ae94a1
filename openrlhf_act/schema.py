"""The canonical data model: trajectories, states, contrast pairs and the labels OpenRLHF carries.

Everything here is plain Python (stdlib only) so that readers, rewards and the HTTP service share one
definition. The JSON shapes are the project's data contract (README, "Data contract"): extend them,
never break them.

A trajectory is the ordered list of steps of one expert episode. Step ``i`` holds the observation the
agent saw *before* acting and the action it took, so the state at step ``i`` is the task, the earlier
(observation, action) turns and ``steps[i].observation``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from openrlhf_act.errors import DataError
from openrlhf_act.files import dumps

TRAJECTORY_SCHEMA = "openrlhf-act/trajectory/v1"
JUDGMENT_KIND = "act_judgment"
# What a judgment prompt asks for: reasoning then the verdict ("free"), or the verdict alone ("none").
JUDGE_REASONING = ("free", "none")
NEXT_ACTION_KIND = "next_action"


@dataclass(frozen=True)
class Step:
    """One expert decision: what the agent observed, then what it did."""

    observation: str
    action: str
    thought: str | None = None
    admissible: tuple[str, ...] | None = None
    reward: float | None = None
    # The environment's cumulative score after this action (replayed and collected trajectories).
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"observation": self.observation, "action": self.action}
        if self.thought is not None:
            out["thought"] = self.thought
        if self.admissible is not None:
            out["admissible"] = list(self.admissible)
        if self.reward is not None:
            out["reward"] = self.reward
        if self.score is not None:
            out["score"] = self.score
        return out


@dataclass(frozen=True)
class Outcome:
    """How the episode ended: ``score`` on the environment's scale, ``success`` when known."""

    score: float | None = None
    success: bool | None = None


@dataclass(frozen=True)
class Trajectory:
    """One expert episode in the canonical schema (see module docstring)."""

    task_id: str
    env: str
    task: str
    steps: tuple[Step, ...]
    outcome: Outcome = field(default_factory=Outcome)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": TRAJECTORY_SCHEMA,
            "task_id": self.task_id,
            "env": self.env,
            "task": self.task,
            "steps": [s.to_json() for s in self.steps],
            "outcome": {k: v for k, v in asdict(self.outcome).items() if v is not None},
            "meta": self.meta,
        }

    def to_line(self) -> str:
        return dumps(self.to_json())


@dataclass(frozen=True)
class State:
    """What the policy sees at one expert step, plus the expert's answer for that step."""

    task_id: str
    env: str
    task: str
    history: tuple[tuple[str, str], ...]
    observation: str
    expert_action: str
    step: int
    admissible: tuple[str, ...] | None = None
    expert_thought: str | None = None
    omitted_turns: int = 0

    @property
    def key(self) -> str:
        """Stable identity of this state inside a dataset: ``task_id#step``."""
        return f"{self.task_id}#{self.step}"


@dataclass(frozen=True)
class ContrastPair:
    """A state with the expert action and the alternatives sampled from the initial policy."""

    state: State
    alternatives: tuple[str, ...]


@dataclass(frozen=True)
class JudgmentLabel:
    """The label of one contrast prompt; it is all the reward needs (the prompt is never parsed)."""

    answer: int
    candidates: tuple[str, ...]
    expert: str
    pair_id: str
    task_id: str
    env: str
    step: int
    kind: str = JUDGMENT_KIND
    # The environment's verdict on the alternatives (``data build --verify-alternatives``); absent otherwise.
    verified: dict[str, Any] | None = field(default=None, hash=False)
    # What the prompt asks for (JUDGE_REASONING): "none" = the verdict alone, which the reward enforces
    # (the no-reasoning control); written only then, so other labels keep their bytes.
    reasoning: str = "free"

    def to_json(self) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "answer": self.answer,
            "candidates": list(self.candidates),
            "expert": self.expert,
            "pair_id": self.pair_id,
            "task_id": self.task_id,
            "env": self.env,
            "step": self.step,
        }
        if self.verified is not None:
            out["verified"] = self.verified
        if self.reasoning != "free":
            out["reasoning"] = self.reasoning
        return out


@dataclass(frozen=True)
class NextActionLabel:
    """The label of one next-action (RL stage) prompt."""

    expert: str
    admissible: tuple[str, ...] | None
    task_id: str
    env: str
    step: int
    kind: str = NEXT_ACTION_KIND

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "expert": self.expert,
            "admissible": list(self.admissible) if self.admissible is not None else None,
            "task_id": self.task_id,
            "env": self.env,
            "step": self.step,
        }


def encode_label(label: JudgmentLabel | NextActionLabel) -> str:
    """Labels travel as JSON strings: one consistent column type for ``datasets`` and OpenRLHF."""
    return dumps(label.to_json())


def _label_dict(raw: Any) -> dict[str, Any]:
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("utf-8")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"label is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(raw, dict):
        raise DataError(f"label must be a JSON object, got {type(raw).__name__}")
    return raw


def _require(d: dict[str, Any], key: str, typ: type) -> Any:
    if key not in d:
        raise DataError(f"label has no '{key}'")
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, typ):
        raise DataError(f"label field '{key}' has type {type(value).__name__}, expected {typ.__name__}")
    return value


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def decode_judgment_label(raw: Any) -> JudgmentLabel:
    """Parse and validate a contrast-prompt label; raise :class:`DataError` when it is unusable.

    JSON-string labels are cached: GRPO scores every label once per sample of its group, and the
    decoded label is immutable.
    """
    if isinstance(raw, str):
        return _decode_judgment_text(raw)
    return _decode_judgment(raw)


@lru_cache(maxsize=4096)
def _decode_judgment_text(raw: str) -> JudgmentLabel:
    return _decode_judgment(raw)


def _decode_judgment(raw: Any) -> JudgmentLabel:
    d = _label_dict(raw)
    candidates = _require(d, "candidates", list)
    if len(candidates) < 2 or not all(isinstance(c, str) for c in candidates):
        raise DataError("label 'candidates' must be a list of at least two strings")
    answer = _require(d, "answer", int)
    if not 1 <= answer <= len(candidates):
        raise DataError(f"label 'answer' {answer} is outside 1..{len(candidates)}")
    return JudgmentLabel(
        answer=answer,
        candidates=tuple(candidates),
        expert=str(d.get("expert", candidates[answer - 1])),
        pair_id=str(d.get("pair_id", "")),
        task_id=str(d.get("task_id", "")),
        env=str(d.get("env", "")),
        step=_int_or(d.get("step"), -1),
        kind=str(d.get("kind", JUDGMENT_KIND)),
        verified=d["verified"] if isinstance(d.get("verified"), dict) else None,
        reasoning=_reasoning(d.get("reasoning", "free")),
    )


def _reasoning(value: Any) -> str:
    if value not in JUDGE_REASONING:
        raise DataError(f"label 'reasoning' must be one of {', '.join(JUDGE_REASONING)}, got {value!r}")
    return value


def decode_next_action_label(raw: Any) -> NextActionLabel:
    """Parse and validate a next-action label; raise :class:`DataError` when it is unusable."""
    d = _label_dict(raw)
    expert = _require(d, "expert", str)
    admissible = d.get("admissible")
    if admissible is not None and not (isinstance(admissible, list) and all(isinstance(a, str) for a in admissible)):
        raise DataError("label 'admissible' must be a list of strings or null")
    return NextActionLabel(
        expert=expert,
        admissible=tuple(admissible) if admissible is not None else None,
        task_id=str(d.get("task_id", "")),
        env=str(d.get("env", "")),
        step=_int_or(d.get("step"), -1),
        kind=str(d.get("kind", NEXT_ACTION_KIND)),
    )
