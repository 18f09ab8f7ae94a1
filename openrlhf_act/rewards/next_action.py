"""The next-action reward (RL stage): does the generated action match the expert's?"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from openrlhf_act.actions import admissible_index, match_admissible, normalize_action, read_action
from openrlhf_act.errors import DataError
from openrlhf_act.rewards.base import STATS, RewardResult, label_error_result
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.schema import decode_next_action_label

NAME = "next_action"

LOG_KEYS = ("accuracy", "admissible", "malformed", "response_chars", "truncated", "label_error")

# Decoded labels kept: GRPO scores each label once per sample of its group, and a rollout batch has
# its prompts' labels in flight together (64 in the paper preset). An entry of a ScienceWorld state
# with ~1,000 admissible commands holds ~0.2 MB, so the cache stays under ~60 MB.
LABEL_CACHE_SIZE = 256


class _Label(NamedTuple):
    """What scoring needs from a label, normalized once: the expert's form and the admissible index."""

    expert: str
    admissible: dict[str, str] | None


def _prepared(label: object) -> _Label:
    """The label decoded and normalized; JSON-string labels (the data contract) through a bounded,
    thread-safe LRU cache keyed by the string (``functools.lru_cache``: reward_func runs in threads)."""
    return _prepared_text(label) if isinstance(label, str) else _prepare(label)


@lru_cache(maxsize=LABEL_CACHE_SIZE)
def _prepared_text(label: str) -> _Label:
    return _prepare(label)


def _prepare(label: object) -> _Label:
    decoded = decode_next_action_label(label)
    index = admissible_index(decoded.admissible) if decoded.admissible is not None else None
    return _Label(normalize_action(decoded.expert), index)


def next_action_reward(response: str, label: object, config: RewardConfig, *, truncated: bool = False) -> RewardResult:
    r"""``exact`` for the expert action (after normalization), ``admissible`` for another admissible
    action, ``other`` for any other action, ``unparseable`` when the response commits to no action
    (:func:`openrlhf_act.actions.read_action`, the rule the evaluation harness executes) or was cut
    off. Score is 1.0 only for an exact match.

    >>> from openrlhf_act.schema import NextActionLabel, encode_label
    >>> label = encode_label(NextActionLabel(expert="open fridge", admissible=("open fridge", "look around"),
    ...     task_id="t0", env="alfworld", step=3))
    >>> next_action_reward("Thought: milk is cold.\nAction: open fridge", label, RewardConfig()).reward
    1.0
    >>> hallucinated = "Action: look around\nObservation: You see a fridge.\nAction: open fridge"
    >>> next_action_reward(hallucinated, label, RewardConfig()).reward  # the first action is the one executed
    0.1
    """
    try:
        prepared = _prepared(label)
    except DataError as exc:
        return label_error_result(NAME, exc, label, LOG_KEYS, response, config.label_error)

    action, _ = read_action(response, admissible=prepared.admissible, truncated=truncated)
    exact = action is not None and normalize_action(action) == prepared.expert
    admissible = action is not None and match_admissible(action, prepared.admissible) is not None
    if action is None:
        STATS.add(f"{NAME}.malformed")
        reward = config.unparseable
    elif exact:
        reward = config.exact
    elif admissible:
        reward = config.admissible
    else:
        reward = config.other
    logs = {
        "accuracy": float(exact),
        "admissible": float(admissible or exact),
        "malformed": float(action is None),
        "response_chars": float(len(response)),
        "truncated": float(truncated),
        "label_error": 0.0,
    }
    return RewardResult(reward, float(exact), logs)
