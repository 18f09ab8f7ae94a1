"""The label of an ``online_env`` prompt row: which live episode the online RL executor plays.

Data export writes these labels and the executor reads them, both through :class:`OnlineEnvLabel`::

    {"kind": "online_env", "env": "scienceworld", "task": "find-animal", "variation": 225, "split": "train"}
    {"kind": "online_env", "env": "alfworld", "game": "json_2.1.1/train/<task dir>/<trial>/game.tw-pddl"}

(``game`` relative to ``$ALFWORLD_DATA`` or absolute, its task type read from the task folder unless
``task`` names one; optional ``max_steps``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from openrlhf_act.envs.alfworld import task_type_of
from openrlhf_act.envs.base import EnvTask
from openrlhf_act.errors import DataError

KIND = "online_env"
ONLINE_ENVS = ("scienceworld", "alfworld")


@dataclass(frozen=True)
class OnlineEnvLabel:
    """Which episode a prompt row plays."""

    task: EnvTask
    max_steps: int | None = None

    @property
    def env(self) -> str:
        return self.task.env

    def encode(self) -> str:
        """The label as the compact JSON string a row carries (:meth:`decode` reads it back)."""
        task = self.task
        data: dict[str, Any] = {"kind": KIND, "env": task.env}
        if task.game_file is not None:
            data["game"] = task.game_file
            if task.name != task_type_of(task.game_file):
                data["task"] = task.name
        else:
            data.update(task=task.name, variation=task.variation)
            if task.split is not None:
                data["split"] = task.split
        if self.max_steps is not None:
            data["max_steps"] = self.max_steps
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: Any) -> OnlineEnvLabel:
        try:
            data = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
        except json.JSONDecodeError as exc:
            raise DataError(f"online_env label is not JSON ({exc.msg})") from None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise DataError(f"not an online_env label: {str(raw)[:120]!r}")
        env = data.get("env")
        if env not in ONLINE_ENVS:
            raise DataError(f"online_env label 'env' must be one of {', '.join(ONLINE_ENVS)}, got {env!r}")
        max_steps = data.get("max_steps")
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise DataError(f"online_env label 'max_steps' must be a positive integer, got {max_steps!r}")
        if env == "alfworld":
            if not isinstance(data.get("game"), str):
                raise DataError("an alfworld online_env label needs 'game' (a game.tw-pddl path)")
            task = EnvTask(env, data.get("task") or task_type_of(data["game"]), game_file=data["game"])
        else:
            variation = data.get("variation", 0)
            if not isinstance(data.get("task"), str) or not isinstance(variation, int):
                raise DataError("a scienceworld online_env label needs 'task' (str) and 'variation' (int)")
            task = EnvTask(env, data["task"], variation=variation, split=data.get("split"))
        return cls(task, max_steps)
