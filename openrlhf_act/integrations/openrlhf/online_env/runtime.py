"""What every episode of one rollout actor process shares: settings, simulators, the chat turns.

Read once per process from the environment the recipe forwards to the Ray workers:
``OPENRLHF_ACT_ENV_POOL`` (simulators per environment, default 4), ``OPENRLHF_ACT_ENV_OPTIONS`` (JSON
adapter options per environment), ``OPENRLHF_ACT_ENV_STOP`` (JSON list of stop strings, default
``["\\nObservation:"]``) and ``OPENRLHF_ACT_CHAT_TEMPLATE_KWARGS`` (JSON, for the chat template).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from typing import Any

from openrlhf_act.integrations.openrlhf.online_env.chat_turns import ChatTurns
from openrlhf_act.integrations.openrlhf.online_env.simulator_pool import SimulatorPool

POOL_ENV = "OPENRLHF_ACT_ENV_POOL"
OPTIONS_ENV = "OPENRLHF_ACT_ENV_OPTIONS"
STOP_ENV = "OPENRLHF_ACT_ENV_STOP"
TEMPLATE_ENV = "OPENRLHF_ACT_CHAT_TEMPLATE_KWARGS"
DEFAULT_STOP = ("\nObservation:",)


def _json_env(name: str, default: Any) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc.msg}") from None


class Runtime:
    """Per-process state shared by all episodes of one rollout actor; its simulators close at exit."""

    def __init__(self) -> None:
        size = int(os.environ.get(POOL_ENV, "4"))
        if size < 1:
            raise ValueError(f"{POOL_ENV} must be >= 1, got {size}")
        self.pool = SimulatorPool(size, _json_env(OPTIONS_ENV, {}))
        self.stop = [str(s) for s in _json_env(STOP_ENV, list(DEFAULT_STOP))]
        self.template_kwargs = _json_env(TEMPLATE_ENV, {})
        self.turns: ChatTurns | None = None
        atexit.register(self.pool.close_all)

    def chat(self, tokenizer: Any) -> ChatTurns:
        if self.turns is None or self.turns.tokenizer is not tokenizer:
            self.turns = ChatTurns(tokenizer, self.template_kwargs)
        return self.turns


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """This process's :class:`Runtime`, built on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime
