"""Build OpenRLHF's ``reward_func(queries, prompts, labels)`` for a named reward.

Reward constants come from the environment (see :mod:`openrlhf_act.rewards.config`) and are read
when the entry file is loaded, so a bad setting fails the rollout actor at start-up, loudly, rather
than every sample later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openrlhf_act.rewards.batch import as_openrlhf_dict
from openrlhf_act.rewards.catalog import get_reward
from openrlhf_act.rewards.config import config_from_env


def make_reward_func(name: str) -> Callable[..., dict[str, Any]]:
    spec = get_reward(name)
    config = config_from_env()
    keys = spec.log_keys

    def reward_func(queries, prompts, labels, **kwargs) -> dict[str, Any]:
        """OpenRLHF calls this with one sample per call, from a thread; it never raises."""
        return as_openrlhf_dict(spec.score(queries, prompts, labels, config), keys, scalar=True)

    reward_func.__name__ = f"{name}_reward_func"
    return reward_func
