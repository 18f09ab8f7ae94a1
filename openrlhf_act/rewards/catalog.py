"""Named rewards: the built-ins, entry-point plugins and the agent executors OpenRLHF loads.

OpenRLHF has no registry of its own (it loads a reward *file* by path), so naming a reward means: a
name here and an entry file OpenRLHF can load (``openrlhf-act reward path NAME``). Other packages add
rewards through the entry-point group ``openrlhf_act.rewards`` whose objects are :class:`RewardSpec`
instances.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from openrlhf_act.rewards.base import RewardResult
from openrlhf_act.rewards.batch import RewardFn, score_batch
from openrlhf_act.rewards.config import RewardConfig

ENTRY_POINT_GROUP = "openrlhf_act.rewards"
_ENTRY_DIR = Path(__file__).resolve().parent.parent / "integrations" / "openrlhf"

BatchScorer = Callable[[Sequence[Any], Sequence[Any], Sequence[Any], RewardConfig], list[RewardResult]]


@dataclass(frozen=True)
class RewardSpec:
    """A named reward: a batch scorer over OpenRLHF's (queries, prompts, labels) and its log keys."""

    name: str
    description: str
    log_keys: tuple[str, ...]
    score: BatchScorer
    entry_file: str | None = None

    @classmethod
    def from_pure(
        cls, name: str, fn: RewardFn, log_keys: Sequence[str], description: str, entry_file: str | None = None
    ):
        """Wrap a pure ``fn(response, label, config, *, truncated) -> RewardResult``."""
        keys = tuple(log_keys)

        def score(queries, prompts, labels, config):
            return score_batch(fn, keys, queries, prompts, labels, config, name)

        return cls(name, description, keys, score, entry_file)


def _builtin_rewards() -> dict[str, RewardSpec]:
    from openrlhf_act.rewards import judgment, next_action, routing

    return {
        judgment.NAME: RewardSpec.from_pure(
            judgment.NAME,
            judgment.judgment_reward,
            judgment.LOG_KEYS,
            "ACT judgment: 1 for choosing the expert action, 0 for the other, -0.5 when malformed",
            str(_ENTRY_DIR / "act_judgment_reward.py"),
        ),
        next_action.NAME: RewardSpec.from_pure(
            next_action.NAME,
            next_action.next_action_reward,
            next_action.LOG_KEYS,
            "next action: 1 for the expert action, 0.1 for another admissible one, -0.5 unparseable",
            str(_ENTRY_DIR / "next_action_reward.py"),
        ),
        routing.NAME: RewardSpec(
            routing.NAME,
            "routes ACT rows to our rewards and every other row to your own reward file or URL",
            routing.log_keys(),
            routing.score_routed,
            str(_ENTRY_DIR / "routing_reward.py"),
        ),
    }


_lock = threading.Lock()
_rewards: dict[str, RewardSpec] | None = None


def rewards() -> dict[str, RewardSpec]:
    """All rewards: built-ins, then entry-point plugins (a plugin cannot shadow a built-in)."""
    global _rewards
    with _lock:
        if _rewards is None:
            found = _builtin_rewards()
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
                if ep.name in found:
                    continue
                spec = ep.load()
                if callable(spec) and not isinstance(spec, RewardSpec):
                    spec = spec()
                if not isinstance(spec, RewardSpec):
                    raise TypeError(f"entry point {ep.name} = {ep.value} is not an openrlhf_act RewardSpec")
                found[ep.name] = spec
            _rewards = found
        return _rewards


def get_reward(name: str) -> RewardSpec:
    table = rewards()
    if name not in table:
        raise KeyError(f"unknown reward {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


# Agent executors OpenRLHF loads with --train.agent_func_path (instead of a reward file).
AGENT_EXECUTORS: dict[str, tuple[str, str]] = {
    "consistency": (
        str(_ENTRY_DIR / "consistency_executor.py"),
        "ACT judgment plus a bonus when the verdict survives swapping the candidates (2 generations/sample)",
    ),
    "online_env": (
        str(_ENTRY_DIR / "env_executor.py"),
        "plays live ScienceWorld / ALFWorld episodes; the episode score is the reward",
    ),
}
