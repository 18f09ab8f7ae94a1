"""The state builder: task + the last W (observation, action) turns + the current observation.

A token budget trims the oldest turns first and never the task or the current observation
(ACT_METHOD.md, section 3). Token counts are estimated from characters unless a tokenizer-backed
counter is given: the estimate (3 characters per token) is deliberately conservative for English
BPE vocabularies, so a state that fits the estimate fits the model.

A single observation longer than ``max_observation_chars`` (a runaway page dump, say) is clipped in
the middle with an explicit marker; this is counted, and documented in the README. The whole rendered
prompt's budget (``--max-prompt-tokens``, the policy's tokenizer) is ``openrlhf_act.prompt_budget``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from openrlhf_act.schema import State, Trajectory

TokenCounter = Callable[[str], int]
CLIP_MARKER = "\n[... {n} characters omitted ...]\n"


@dataclass(frozen=True)
class StateConfig:
    """How much history a state carries. Defaults are the project's documented defaults."""

    window: int = 8
    max_state_tokens: int = 4096
    max_observation_chars: int = 16_000
    chars_per_token: float = 3.0

    def __post_init__(self) -> None:
        if self.window < 0:
            raise ValueError("window must be >= 0")
        if self.max_state_tokens <= 0 or self.max_observation_chars <= 0 or self.chars_per_token <= 0:
            raise ValueError("max_state_tokens, max_observation_chars and chars_per_token must be positive")


def estimate_tokens(text: str, chars_per_token: float = 3.0) -> int:
    return int(len(text) / chars_per_token) + 1


def clip_observation(text: str, max_chars: int) -> tuple[str, bool]:
    """Keep the head and tail of an over-long observation; return (text, clipped)."""
    if len(text) <= max_chars:
        return text, False
    omitted = len(text) - max_chars
    head = max_chars // 2
    return text[:head] + CLIP_MARKER.format(n=omitted) + text[len(text) - (max_chars - head) :], True


def make_state(
    *,
    task_id: str,
    env: str,
    task: str,
    turns: Sequence[tuple[str, str]],
    observation: str,
    step: int,
    admissible: tuple[str, ...] | None = None,
    expert_action: str = "",
    expert_thought: str | None = None,
    config: StateConfig = StateConfig(),
    count_tokens: TokenCounter | None = None,
) -> State:
    """Build the state after ``turns`` (all earlier (observation, action) pairs, oldest first).

    Evaluation calls this with the live episode's turns, data building (through
    :func:`states_from_trajectory`) with an expert prefix, so a model is trained and tested on
    identically shaped states.
    """
    count = count_tokens or (lambda text: estimate_tokens(text, config.chars_per_token))
    clipped = [(clip_observation(o, config.max_observation_chars)[0], a) for o, a in turns]
    sizes = [count(o) + count(a) for o, a in clipped]
    return _windowed(
        task_id,
        env,
        task,
        clipped,
        sizes,
        len(clipped),
        observation,
        step,
        admissible,
        expert_action,
        expert_thought,
        config,
        count,
    )


def _windowed(
    task_id: str,
    env: str,
    task: str,
    turns: Sequence[tuple[str, str]],
    sizes: Sequence[int],
    end: int,
    observation: str,
    step: int,
    admissible: tuple[str, ...] | None,
    expert_action: str,
    expert_thought: str | None,
    config: StateConfig,
    count: TokenCounter,
) -> State:
    """Of ``turns[:end]``, keep the last ``window``, then drop the oldest until the token budget holds."""
    observation, _ = clip_observation(observation, config.max_observation_chars)
    start = max(0, end - config.window)
    total = count(task) + count(observation) + sum(sizes[start:end])
    first = start
    while first < end and total > config.max_state_tokens:
        total -= sizes[first]
        first += 1
    return State(
        task_id=task_id,
        env=env,
        task=task,
        history=tuple(turns[first:end]),
        observation=observation,
        expert_action=expert_action,
        step=step,
        admissible=admissible,
        expert_thought=expert_thought,
        omitted_turns=first,
    )


def states_from_trajectory(
    trajectory: Trajectory, config: StateConfig = StateConfig(), count_tokens: TokenCounter | None = None
) -> list[State]:
    """One state per expert step; the expert's action at that step is the state's answer.

    Observations are clipped and turns sized once per trajectory, not once per state.
    """
    count = count_tokens or (lambda text: estimate_tokens(text, config.chars_per_token))
    turns = [(clip_observation(s.observation, config.max_observation_chars)[0], s.action) for s in trajectory.steps]
    sizes = [count(o) + count(a) for o, a in turns]
    return [
        _windowed(
            trajectory.task_id,
            trajectory.env,
            trajectory.task,
            turns,
            sizes,
            i,
            step.observation,
            i,
            step.admissible,
            step.action,
            step.thought,
            config,
            count,
        )
        for i, step in enumerate(trajectory.steps)
    ]


def observation_clipped(text: str, config: StateConfig) -> bool:
    return len(text) > config.max_observation_chars
