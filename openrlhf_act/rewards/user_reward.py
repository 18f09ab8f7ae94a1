"""The user's own reward, as the routing reward calls it: a ``reward_func`` file or a remote RM.

Both speak OpenRLHF's reward contract: ``reward_func(queries, prompts, labels)`` (or a POST of
``{"query", "prompts", "labels"}``) answers ``{"rewards", "scores"?, "extra_logs"?}``, each value a
number, a list or a tensor; the router asks for one sample at a time and reads element 0.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import cycle
from typing import Any

HTTP_TIMEOUT_S = 180
HTTP_TRIES = 5

UserReward = Callable[[list[Any], list[Any], list[Any]], dict[str, Any]]


@dataclass(frozen=True)
class UserAnswer:
    """The user's reward for one sample, and the ``extra_logs`` asked for."""

    reward: float
    score: float
    logs: dict[str, float]


def load_user_reward(target: str) -> UserReward:
    """A callable for the user's reward file or URL(s); raises ``ValueError`` when unusable."""
    target = target.strip()
    if target.startswith(("http://", "https://")):
        return _http_reward([u.strip() for u in target.split(",") if u.strip()])
    if not target.endswith(".py") or not os.path.isfile(target):
        raise ValueError(f"{target!r} is neither an existing .py reward file nor an http(s) URL")
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


def ask_user_reward(reward: UserReward, query: Any, prompt: Any, label: Any, log_keys: Sequence[str]) -> UserAnswer:
    """Score one sample; ``log_keys``: the ``extra_logs`` to read (others are ignored, whatever they hold).

    Raises when the reward fails or answers something that is not a finite number."""
    answer = reward([query], [prompt], [label])
    value = _number(answer["rewards"])
    score = answer.get("scores")
    logs = {key: _number(v) for key, v in (answer.get("extra_logs") or {}).items() if key in log_keys}
    return UserAnswer(value, value if score is None else _number(score), logs)


def _number(value: Any) -> float:
    """The first sample's value from a scalar, list or tensor-like value; it must be finite."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        value = value[0]
        if isinstance(value, (list, tuple)):
            value = value[0]
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number
