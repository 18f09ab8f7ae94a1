"""Route each sample by its label: ACT rows to our rewards, every other row to the user's reward.

This lets ACT contrast prompts be blended into an existing GRPO run (``--data.prompt_probs``) that
already scores math, code or a reward model. Configuration (environment, read once per process):

* ``OPENRLHF_ACT_ROUTE_DEFAULT``: the user's reward, either a ``.py`` file defining OpenRLHF's
  ``reward_func(queries, prompts, labels)`` or one or more comma-separated HTTP URLs speaking
  OpenRLHF's remote-RM protocol.
* ``OPENRLHF_ACT_ROUTE_LOG_KEYS``: comma-separated ``extra_logs`` keys the user's reward returns; they
  are logged as ``user_<key>`` (0 on ACT rows) so every sample carries the same key set.

A row is ours only when its label is a JSON object whose ``kind`` names one of our rewards (our
exports always write it): a user's label that merely looks like ours (say, a multiple-choice label
with ``answer`` and ``candidates``) stays with the user's reward.

Every sample logs ``route_act``, ``route_next_action`` and ``route_user`` (0/1), ``user_reward`` and
``user_error`` (1 when the user's reward failed and the sample got 0), plus our rewards' keys prefixed
``act_`` / ``na_``. Per-route averages are the prefixed mean divided by the route mean. Calling the
user's reward is :mod:`openrlhf_act.rewards.user_reward`'s job.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from openrlhf_act.rewards import judgment, next_action
from openrlhf_act.rewards.base import STATS, RewardResult
from openrlhf_act.rewards.batch import score_batch
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.rewards.user_reward import UserReward, ask_user_reward, load_user_reward
from openrlhf_act.schema import JUDGMENT_KIND, NEXT_ACTION_KIND

NAME = "routing"
DEFAULT_ENV = "OPENRLHF_ACT_ROUTE_DEFAULT"
USER_KEYS_ENV = "OPENRLHF_ACT_ROUTE_LOG_KEYS"
USER_PREFIX = "user_"
USER_FAILURE_REWARD = 0.0

logger = logging.getLogger("openrlhf_act.rewards")

_OURS = {
    JUDGMENT_KIND: ("act_", judgment.judgment_reward, judgment.LOG_KEYS, "route_act"),
    NEXT_ACTION_KIND: ("na_", next_action.next_action_reward, next_action.LOG_KEYS, "route_next_action"),
}
ROUTE_KEYS = ("route_act", "route_next_action", "route_user")
BASE_LOG_KEYS = (
    *ROUTE_KEYS,
    "user_reward",
    "user_error",
    *("act_" + k for k in judgment.LOG_KEYS),
    *("na_" + k for k in next_action.LOG_KEYS),
)


def user_log_keys(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    raw = env.get(USER_KEYS_ENV, "")
    return tuple(USER_PREFIX + k.strip() for k in raw.split(",") if k.strip())


def log_keys(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    return BASE_LOG_KEYS + user_log_keys(environ)


def route_kind(label: Any) -> str | None:
    """The reward kind a label explicitly names, when it is one of ours; ``None`` sends it to the user."""
    if isinstance(label, (bytes, bytearray)):
        label = label.decode("utf-8", "replace")
    if isinstance(label, str):
        if not label.lstrip().startswith("{"):
            return None
        try:
            label = json.loads(label)
        except json.JSONDecodeError:
            return None
    kind = label.get("kind") if isinstance(label, dict) else None
    return kind if kind in _OURS else None


class Router:
    """Dispatch by label kind; the user's reward is loaded lazily, once (a failed load is not retried)."""

    def __init__(self, default_target: str | None, user_keys: Sequence[str]):
        self.default_target = default_target
        self.user_keys = tuple(user_keys)
        self.keys = BASE_LOG_KEYS + self.user_keys
        self._asked = tuple(key.removeprefix(USER_PREFIX) for key in self.user_keys)
        self._user: UserReward | None = None
        self._load_error: Exception | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Router:
        return cls(os.environ.get(DEFAULT_ENV) or None, user_log_keys())

    def _user_reward(self) -> UserReward:
        with self._lock:
            if self._load_error is not None:
                raise self._load_error
            if self._user is None:
                try:
                    if not self.default_target:
                        raise ValueError(f"a non-ACT row arrived but {DEFAULT_ENV} is not set")
                    self._user = load_user_reward(self.default_target)
                except Exception as exc:
                    self._load_error = exc
                    logger.error("openrlhf-act routing: cannot load the user's reward (%s): %s", DEFAULT_ENV, exc)
                    raise
            return self._user

    def score(self, queries: Sequence[Any], prompts: Sequence[Any], labels: Sequence[Any], config: RewardConfig):
        out: list[RewardResult] = []
        for i, query in enumerate(queries):
            prompt = prompts[i] if i < len(prompts) else ""
            label = labels[i] if i < len(labels) else None
            logs = dict.fromkeys(self.keys, 0.0)
            kind = route_kind(label)
            if kind is not None:
                prefix, fn, keys, flag = _OURS[kind]
                (result,) = score_batch(fn, keys, [query], [prompt], [label], config, NAME)
                logs[flag] = 1.0
                for k in keys:
                    logs[prefix + k] = result.logs[k]
                out.append(RewardResult(result.reward, result.score, logs))
                continue
            out.append(self._score_user(query, prompt, label, logs))
        return out

    def _score_user(self, query: Any, prompt: Any, label: Any, logs: dict[str, float]) -> RewardResult:
        logs["route_user"] = 1.0
        try:
            answer = ask_user_reward(self._user_reward(), query, prompt, label, self._asked)
        except Exception as exc:  # never raise into OpenRLHF
            STATS.add(f"{NAME}.user_reward_error")
            if self._load_error is None:
                logger.warning("openrlhf-act routing: the user's reward failed (%s); reward 0", exc)
            logs["user_error"] = 1.0
            return RewardResult(USER_FAILURE_REWARD, 0.0, logs)
        logs.update({USER_PREFIX + key: value for key, value in answer.logs.items()})
        logs["user_reward"] = answer.reward
        return RewardResult(answer.reward, answer.score, logs)


_router: Router | None = None
_router_lock = threading.Lock()


def score_routed(queries, prompts, labels, config: RewardConfig) -> list[RewardResult]:
    """The registry's batch scorer for ``routing`` (one router per process, built from the env)."""
    global _router
    with _router_lock:
        if _router is None:
            _router = Router.from_env()
        router = _router
    return router.score(list(queries or []), list(prompts or []), list(labels or []), config)


def reset() -> None:
    """Forget the process's router, so the next sample reads ``OPENRLHF_ACT_ROUTE_DEFAULT`` again.

    For tests and long-lived services that change the environment. The log key set is fixed per
    process by the registry (``openrlhf_act.rewards.catalog``), so ``OPENRLHF_ACT_ROUTE_LOG_KEYS`` must be
    set before the first reward is built.
    """
    global _router
    with _router_lock:
        _router = None
