"""The online executor's simulators: started in this process, reused across episodes.

A ScienceWorld JVM costs a second to start, so an actor keeps at most ``size`` simulators per
environment. An episode holds one from reset to its end; blocking calls run in threads
(``asyncio.to_thread``) so the actor's event loop keeps generating for other episodes. A simulator that
failed is closed and never reused.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from openrlhf_act.envs.base import TextEnv
from openrlhf_act.envs.registry import make_env

logger = logging.getLogger("openrlhf_act.env_executor")


class SimulatorPool:
    """At most ``size`` (>= 1) simulators per environment in this process, reused across episodes."""

    def __init__(self, size: int, options: dict[str, dict[str, Any]]):
        self.size = size
        self.options = options
        self._idle: dict[str, list[TextEnv]] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._all: set[TextEnv] = set()
        self._lock = threading.Lock()

    async def acquire(self, env_name: str) -> TextEnv:
        limit = self._limits.setdefault(env_name, asyncio.Semaphore(self.size))
        await limit.acquire()
        with self._lock:
            idle = self._idle.setdefault(env_name, [])
            env = idle.pop() if idle else None
        if env is not None:
            return env
        try:
            env = await asyncio.to_thread(make_env, env_name, **self.options.get(env_name, {}))
        except BaseException:
            limit.release()
            raise
        with self._lock:
            self._all.add(env)
        return env

    async def release(self, env_name: str, env: TextEnv, *, broken: bool) -> None:
        """Return a healthy simulator for reuse; close a broken one."""
        if broken:
            with self._lock:
                self._all.discard(env)
            await asyncio.to_thread(_close_quietly, env)
        else:
            with self._lock:
                self._idle.setdefault(env_name, []).append(env)
        self._limits[env_name].release()

    def close_all(self) -> None:
        with self._lock:
            envs, self._all, self._idle = list(self._all), set(), {}
        for env in envs:
            _close_quietly(env)


def _close_quietly(env: TextEnv) -> None:
    try:
        env.close()
    except Exception as exc:  # a dead simulator may fail to close; it is dropped either way
        logger.debug("closing %s failed: %s", env.name, exc)
