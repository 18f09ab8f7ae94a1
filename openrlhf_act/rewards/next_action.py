"""The next-action reward (RL stage): does the generated action match the expert's?"""

from __future__ import annotations

from openrlhf_act.actions import match_admissible, normalize_action, parse_action
from openrlhf_act.rewards.base import STATS, RewardResult, label_error_result
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.schema import DataError, decode_next_action_label

NAME = "next_action"

LOG_KEYS = ("accuracy", "admissible", "malformed", "response_chars", "truncated", "label_error")


def next_action_reward(response: str, label: object, config: RewardConfig, *, truncated: bool = False) -> RewardResult:
    """``exact`` for the expert action (after normalization), ``admissible`` for another admissible
    action, ``other`` for any other action, ``unparseable`` when no action can be read or the
    response was cut off. Score is 1.0 only for an exact match."""
    try:
        decoded = decode_next_action_label(label)
    except DataError as exc:
        return label_error_result(NAME, exc, label, LOG_KEYS, response, config.label_error)

    action = None if truncated else parse_action(response)
    exact = action is not None and normalize_action(action) == normalize_action(decoded.expert)
    admissible = action is not None and match_admissible(action, decoded.admissible) is not None
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
