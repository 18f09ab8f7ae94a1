"""The online executor's simulators: environment worker processes (:mod:`openrlhf_act.envs.pool`), reused
across episodes.

A ScienceWorld JVM costs a second to start, so an actor keeps at most ``size`` workers per environment,
each a process with its own simulator. An episode holds one worker from its start to its end; the
blocking requests run in threads (``asyncio.to_thread``) so the actor's event loop keeps generating for
other episodes. A worker that crashed or hung is replaced by :meth:`EnvWorker.request` itself and one
whose simulator failed drops it, so every worker given back is fit for the next episode.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from openrlhf_act.envs.pool import DEFAULT_START_TIMEOUT, DEFAULT_STEP_TIMEOUT, START, EnvWorker


class SimulatorPool:
    """At most ``size`` (>= 1) environment workers per environment in this process, reused across episodes."""

    def __init__(self, size: int, options: dict[str, dict[str, Any]]):
        self.size = size
        self.options = options
        self._idle: dict[str, list[EnvWorker]] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._all: list[EnvWorker] = []
        # The last request per lent worker: one whose episode was cancelled goes on in its thread,
        # and the worker is lent again only once it has answered (or been replaced).
        self._in_flight: dict[EnvWorker, asyncio.Future[Any]] = {}
        self._lock = threading.Lock()

    async def acquire(self, env_name: str) -> EnvWorker:
        limit = self._limits.setdefault(env_name, asyncio.Semaphore(self.size))
        await limit.acquire()
        with self._lock:
            idle = self._idle.setdefault(env_name, [])
            worker = idle.pop() if idle else None
        if worker is not None:
            return worker
        try:
            worker = await asyncio.to_thread(EnvWorker, env_name, self.options.get(env_name, {}), len(self._all))
        except BaseException:
            limit.release()
            raise
        with self._lock:
            self._all.append(worker)
        return worker

    async def request(self, worker: EnvWorker, kind: str, payload: Any) -> Any:
        """``worker``'s answer to one request (``START`` a task, ``STEP`` an action); raises
        :class:`openrlhf_act.envs.pool.WorkerFailed` when the simulator failed, crashed or hung."""
        timeout = DEFAULT_START_TIMEOUT if kind == START else DEFAULT_STEP_TIMEOUT
        call = asyncio.ensure_future(asyncio.to_thread(worker.request, kind, payload, timeout))
        self._in_flight[worker] = call
        return await asyncio.shield(call)

    def release(self, env_name: str, worker: EnvWorker) -> None:
        """Give ``worker`` back for the next episode, once its last request has answered."""
        call = self._in_flight.pop(worker, None)
        if call is None or call.done():
            self._give_back(env_name, worker, call)
        else:
            call.add_done_callback(lambda done: self._give_back(env_name, worker, done))

    def _give_back(self, env_name: str, worker: EnvWorker, call: asyncio.Future[Any] | None) -> None:
        if call is not None and not call.cancelled():
            call.exception()  # retrieved: a failure belonged to the episode, which reported it
        with self._lock:
            self._idle.setdefault(env_name, []).append(worker)
        self._limits[env_name].release()

    def close_all(self) -> None:
        """Close every worker and its simulator (at process exit)."""
        with self._lock:
            workers, self._all, self._idle = self._all, [], {}
        for worker in workers:
            worker.close()
