"""Known action-string drifts between environment versions, mapped when a replay meets them.

Public trajectories were recorded on older releases: ETO's and ReAct's ALFWorld data say
``put potato 1 in/on sinkbasin 1`` where alfworld 0.4.x admits only ``move potato 1 to sinkbasin 1``.
A rule applies only where the environment's admissible list lacks the recorded action and holds
exactly the rewritten one, so an action the environment accepts as written is never changed; each
use is counted by rule name in the replay manifest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DriftRule:
    """``rewrite`` maps a recorded action to the current form (None: the rule does not apply)."""

    name: str
    env: str
    rewrite: Callable[[str], str | None]
    why: str


def _alfworld_put(action: str) -> str | None:
    match = re.fullmatch(r"put (?P<obj>.+?) (?:in/on|in|on) (?P<recep>.+)", action)
    return f"move {match['obj']} to {match['recep']}" if match else None


def _spacing_and_case(action: str) -> str | None:
    return " ".join(action.split()).lower()


RULES: tuple[DriftRule, ...] = (
    DriftRule(
        "alfworld_put_to_move", "alfworld", _alfworld_put, "alfworld >= 0.3 renamed put X in/on Y to move X to Y"
    ),
    DriftRule("spacing_and_case", "*", _spacing_and_case, "extra spaces or capitals in recorded commands"),
)


def map_drift(env: str, action: str, admissible: Sequence[str] | None) -> tuple[str, str | None]:
    """(the action to play, the rule used or None). Without an admissible list nothing is mapped:
    the rewrite could not be checked against what the environment accepts."""
    if not admissible or action in admissible:
        return action, None
    allowed = set(admissible)
    for rule in RULES:
        if rule.env not in (env, "*"):
            continue
        rewritten = rule.rewrite(action)
        if rewritten is not None and rewritten != action and rewritten in allowed:
            return rewritten, rule.name
    return action, None
