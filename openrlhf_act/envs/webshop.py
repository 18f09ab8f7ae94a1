"""WebShop as a client of a WebShop environment service that the user runs.

WebShop cannot run offline (it needs its product catalogue and search index), so this adapter speaks
the HTTP protocol of AgentGym's ``agentenv-webshop`` server (the ``webshop`` command of that package):

=========================  ========================================  ===============================
request                    body / query                              answer
=========================  ========================================  ===============================
``GET /``                  -                                         ``"ok"`` (health check)
``POST /create``           -                                         env id (int)
``POST /reset``            ``{"env_idx": id, "session_id": goal}``    ``[observation, null]``
``GET /observation``       ``?env_idx=id``                           observation text
``GET /instruction_text``  ``?env_idx=id``                           the goal's instruction
``GET /available_actions`` ``?env_idx=id``                           ``{"has_search_bar", "clickables"}``
``POST /step``             ``{"env_idx": id, "action": "search[..]"}`` ``{"state", "reward", "done", "info"}``
``POST /close``            ``{"env_idx": id}``                        ``{"closed": bool}``
=========================  ========================================  ===============================

A goal is the ``session_id`` (an index into WebShop's goal list, which WebShop shuffles with seed 233);
WebShop's own baselines (``baseline_models/env.py``) use goals 0-499 as the test split, 500-1499 as
the dev ("eval") split and 1500 onwards for training. The reward is WebShop's 0..1 purchase score;
an episode succeeds when it is 1.0. Every request has a timeout, so an unreachable or stuck service
fails with :class:`EnvError` in bounded time.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from openrlhf_act.envs.base import EnvError, EnvStep, EnvTask, EpisodeQuery, TextEnv

ENV_NAME = "webshop"
TASK_NAME = "webshop"
URL_ENV = "OPENRLHF_ACT_WEBSHOP_URL"
DEFAULT_URL = "http://127.0.0.1:36001"
# Goal index ranges of WebShop's standard splits (end exclusive; None: up to the last goal).
SPLIT_RANGES: dict[str, tuple[int, int | None]] = {"test": (0, 500), "dev": (500, 1500), "train": (1500, None)}
SPLITS = tuple(SPLIT_RANGES)
DEFAULT_MAX_STEPS = 15
SEARCH_TEMPLATE = "search[<keywords>]"
_BUSY_RETRIES = 5


def goals(split: str) -> range:
    """The goal indices of a split with a known end (test, dev)."""
    if split not in SPLIT_RANGES:
        raise EnvError(f"unknown WebShop split {split!r}; choose one of {', '.join(SPLITS)}")
    start, end = SPLIT_RANGES[split]
    if end is None:
        raise EnvError(f"the WebShop {split!r} split has no fixed end: name its goals explicitly")
    return range(start, end)


def check_goal(goal: Any, split: str | None) -> int:
    if not isinstance(goal, int) or isinstance(goal, bool) or goal < 0:
        raise EnvError(f"a WebShop goal is a non-negative integer index, not {goal!r}")
    if split is not None:
        if split not in SPLIT_RANGES:
            raise EnvError(f"unknown WebShop split {split!r}; choose one of {', '.join(SPLITS)}")
        start, end = SPLIT_RANGES[split]
        if goal < start or (end is not None and goal >= end):
            shown = f"{start}-{end - 1}" if end is not None else f"{start}+"
            raise EnvError(f"WebShop goal {goal} is not in the {split!r} split (goals {shown})")
    return goal


def check_service(url: str | None = None, timeout: float = 30.0) -> None:
    """Raise :class:`EnvError` unless a WebShop service answers at ``url`` (creates no environment)."""
    WebShop(url=url, timeout=timeout, create=False)


class WebShop(TextEnv):
    """One environment on the user's WebShop service (one ``/create`` per adapter)."""

    name = ENV_NAME
    description = "WebShop through an AgentGym WebShop server (test split: goals 0-499)"
    splits = SPLITS
    eval_splits = ("test",)

    @classmethod
    def list_tasks(cls, **options: Any) -> list[str]:
        return [TASK_NAME]

    @classmethod
    def episodes(cls, query: EpisodeQuery, env: TextEnv | None = None) -> list[EnvTask]:
        """Goals are the variations of WebShop's one task."""
        if query.tasks and query.tasks != (TASK_NAME,):
            raise EnvError(f"WebShop has one task, {TASK_NAME!r}; its episodes are goals (variations)")
        split, variations = query.split, query.variations
        picked = [check_goal(v, split) for v in variations] if variations else list(goals(split))
        if query.episodes and not variations:
            picked = picked[: query.episodes]
        return [EnvTask(ENV_NAME, TASK_NAME, variation=v, split=split) for v in picked]

    @classmethod
    def preflight(cls, *, url: str | None = None, timeout: float = 30.0, **options: Any) -> None:
        check_service(url, timeout)

    def __init__(
        self, *, url: str | None = None, timeout: float = 30.0, max_steps: int | None = None, create: bool = True
    ):
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise EnvError(f"the WebShop service URL must start with http:// or https://, got {self.url!r}")
        self.timeout = timeout
        self.max_steps = max_steps or DEFAULT_MAX_STEPS
        self._env_id: int | None = None
        self._task: EnvTask | None = None
        self._instruction = ""
        self._clickables: tuple[str, ...] = ()
        self._has_search = False
        self._score = 0.0
        health = self._request("GET", "/")
        if health != "ok":
            raise EnvError(f"{self.url} answered {health!r} to GET /: is it an AgentGym WebShop server?")
        if not create:
            return
        env_id = self._request("POST", "/create")
        if not isinstance(env_id, int):
            raise EnvError(f"{self.url}/create returned {env_id!r}, expected an environment id")
        self._env_id = env_id

    # ---- HTTP ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, query: dict | None = None) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode()
        if method == "POST" and data is None:
            data = b""
        for attempt in range(_BUSY_RETRIES):
            headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                if exc.code == 503 and attempt + 1 < _BUSY_RETRIES:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                detail = exc.read()[:200].decode("utf-8", "replace")
                raise EnvError(f"WebShop service {method} {path} failed: HTTP {exc.code} {detail}") from exc
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise EnvError(
                    f"WebShop service at {self.url} is unreachable ({reason}); start AgentGym's WebShop server "
                    f"and pass its URL (--env-option url=... or ${URL_ENV})"
                ) from exc
            except json.JSONDecodeError as exc:
                raise EnvError(f"WebShop service {method} {path} returned invalid JSON: {exc.msg}") from exc
        raise EnvError(f"WebShop service {method} {path} stayed busy (HTTP 503) after {_BUSY_RETRIES} tries")

    def _env_query(self) -> dict[str, int]:
        if self._env_id is None:
            raise EnvError("WebShop adapter is closed")
        return {"env_idx": self._env_id}

    # ---- episode ------------------------------------------------------------------------------
    def load(self, task: EnvTask) -> None:
        check_goal(task.variation, task.split)
        self._task = task

    @property
    def task_description(self) -> str:
        return self._instruction

    def reset(self) -> EnvStep:
        if self._task is None:
            raise EnvError("WebShop: reset() before load()")
        self._request("POST", "/reset", {**self._env_query(), "session_id": self._task.variation})
        self._instruction = str(self._request("GET", "/instruction_text", query=self._env_query())).strip()
        if self._instruction.lower().startswith("instruction:"):
            self._instruction = self._instruction[len("instruction:") :].strip()
        self._score = 0.0
        return self._observe(0.0, False, True)

    def step(self, action: str) -> EnvStep:
        valid = self._is_available(action)
        answer = self._request("POST", "/step", {**self._env_query(), "action": action})
        if not isinstance(answer, dict) or "state" not in answer:
            raise EnvError(f"WebShop service /step returned {str(answer)[:200]!r}")
        score = float(answer.get("reward") or 0.0)
        reward, self._score = score - self._score, max(self._score, score)
        return self._observe(reward, bool(answer.get("done")), valid, observation=str(answer["state"]))

    def _observe(self, reward: float, done: bool, valid: bool, observation: str | None = None) -> EnvStep:
        if observation is None:
            observation = str(self._request("GET", "/observation", query=self._env_query()))
        available = self._request("GET", "/available_actions", query=self._env_query()) or {}
        self._has_search = bool(available.get("has_search_bar"))
        self._clickables = tuple(str(c) for c in available.get("clickables") or () if str(c) != "search")
        admissible = ((SEARCH_TEMPLATE,) if self._has_search else ()) + tuple(f"click[{c}]" for c in self._clickables)
        return EnvStep(
            observation=observation,
            reward=reward,
            score=self._score,
            done=done,
            won=self._score >= 1.0,
            admissible=admissible or None,
            valid=valid,
        )

    def _is_available(self, action: str) -> bool:
        """WebShop silently ignores actions it cannot perform; judge them the way its text env does."""
        text = action.strip()
        if text.startswith("search[") and text.endswith("]"):
            return self._has_search and bool(text[7:-1].strip())
        if text.startswith("click[") and text.endswith("]"):
            return text[6:-1].strip().lower() in {c.lower() for c in self._clickables}
        return False

    def close(self) -> None:
        env_id, self._env_id = self._env_id, None
        if env_id is None:
            return
        with contextlib.suppress(EnvError):  # the service may be gone already; nothing is left to release
            self._request("POST", "/close", {"env_idx": env_id})
