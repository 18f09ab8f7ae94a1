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
``act_`` / ``na_``. Per-route averages are the prefixed mean divided by the route mean.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from itertools import cycle
from typing import Any

from openrlhf_act.rewards import judgment, next_action
from openrlhf_act.rewards.base import STATS, RewardResult
from openrlhf_act.rewards.batch import score_batch
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.schema import JUDGMENT_KIND, NEXT_ACTION_KIND

NAME = "routing"
DEFAULT_ENV = "OPENRLHF_ACT_ROUTE_DEFAULT"
USER_KEYS_ENV = "OPENRLHF_ACT_ROUTE_LOG_KEYS"
HTTP_TIMEOUT_S = 180
HTTP_TRIES = 5
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

UserReward = Callable[[list[Any], list[Any], list[Any]], dict[str, Any]]


def user_log_keys(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    raw = env.get(USER_KEYS_ENV, "")
    return tuple("user_" + k.strip() for k in raw.split(",") if k.strip())


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


def load_user_reward(target: str) -> UserReward:
    """A callable for the user's reward file or URL(s); raises ``ValueError`` when unusable."""
    target = target.strip()
    if target.startswith(("http://", "https://")):
        return _http_reward([u.strip() for u in target.split(",") if u.strip()])
    if not target.endswith(".py") or not os.path.isfile(target):
        raise ValueError(f"{DEFAULT_ENV}={target!r} is neither an existing .py reward file nor an http(s) URL")
    spec = importlib.util.spec_from_file_location("user_reward_func", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "reward_func", None)):
        raise ValueError(f"{target} defines no reward_func(queries, prompts, labels)")
    return module.reward_func


def _http_reward(urls: list[str]) -> UserReward:
    """OpenRLHF's remote-RM protocol: POST query/prompts/labels, URLs taken in turn, a few tries."""
    rotation = cycle(urls)
    lock = threading.Lock()

    def call(queries, prompts, labels):
        with lock:
            url = next(rotation)
        body = json.dumps({"query": queries, "prompts": prompts, "labels": labels}).encode()
        last: Exception | None = None
        for attempt in range(HTTP_TRIES):
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                    return json.loads(response.read())
            except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
                last = exc
                time.sleep(min(2**attempt, 8) * 0.25)
        raise RuntimeError(f"user reward at {url} failed {HTTP_TRIES} times: {last}")

    return call


def _number(value: Any, index: int) -> float:
    """Pick element ``index`` from a scalar, list or tensor-like value; it must be finite."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        value = value[index] if len(value) > index else value[0]
        if isinstance(value, (list, tuple)):
            value = value[0]
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


class Router:
    """Dispatch by label kind; the user's reward is loaded lazily, once (a failed load is not retried)."""

    def __init__(self, default_target: str | None, user_keys: Sequence[str]):
        self.default_target = default_target
        self.user_keys = tuple(user_keys)
        self.keys = BASE_LOG_KEYS + self.user_keys
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
                    logger.error("openrlhf-act routing: cannot load the user's reward: %s", exc)
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
        user_logs: dict[str, float] = {}
        try:
            answer = self._user_reward()([query], [prompt], [label])
            reward = _number(answer["rewards"], 0)
            score = answer.get("scores")
            score = reward if score is None else _number(score, 0)
            for key, value in (answer.get("extra_logs") or {}).items():
                if "user_" + key in logs:
                    user_logs["user_" + key] = _number(value, 0)
        except Exception as exc:  # never raise into OpenRLHF
            STATS.add(f"{NAME}.user_reward_error")
            if self._load_error is None:
                logger.warning("openrlhf-act routing: the user's reward failed (%s); reward 0", exc)
            logs["user_error"] = 1.0
            return RewardResult(USER_FAILURE_REWARD, 0.0, logs)
        logs.update(user_logs)
        logs["user_reward"] = reward
        return RewardResult(reward, score, logs)


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
