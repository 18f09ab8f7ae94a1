"""Environment worker processes: one simulator per process, driven over a pipe.

Simulators block (a JVM call, a PDDL step, an HTTP request) and can die (the JVM is killed, a game
hangs), so each one lives in its own process started with ``spawn``. The parent sends ``start`` (load
and reset an episode) or ``step`` (one action) and waits on the pipe *and* the process sentinel with a
deadline: a reply, a crash and a hang are all noticed in bounded time. A hung or dead worker is
killed together with the helper processes its adapter reported (``TextEnv.child_pids``) and replaced.

A :class:`WorkerPool` keeps workers alive across runs: evaluating several checkpoints or splits through
one pool pays the simulators' start (and a JVM's JIT warm-up, which dominates short ScienceWorld
runs) once.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from openrlhf_act.envs.base import EnvError, EnvStep, EnvTask, TextEnv

logger = logging.getLogger(__name__)

START = "start"
STEP = "step"
CLOSE = "close"


@dataclass(frozen=True)
class Started:
    """A worker's answer to ``start``: the episode's task text and first observation."""

    task_description: str
    first: EnvStep
    max_steps: int
    score_scale: float
    child_pids: tuple[int, ...]


class WorkerFailed(Exception):
    """The worker process died, hung past its deadline, or its simulator failed."""


def _serve(conn: Connection, env_name: str, options: dict[str, Any]) -> None:
    """The worker's loop (runs in the child process)."""
    from openrlhf_act.envs.registry import make_env

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it closes us in order
    env: TextEnv | None = None
    try:
        while True:
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            if kind == CLOSE:
                return
            try:
                if kind == START:
                    if env is None:
                        env = make_env(env_name, **options)
                    env.load(payload)
                    first = env.reset()
                    reply: Any = Started(env.task_description, first, env.max_steps, env.score_scale, env.child_pids)
                elif env is None:
                    raise EnvError("step before start")
                else:
                    reply = env.step(payload)
                conn.send(("ok", reply))
            except Exception as exc:  # report, drop the (possibly broken) simulator, keep serving
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
                if env is not None:
                    with contextlib.suppress(Exception):
                        env.close()
                env = None
    finally:
        if env is not None:
            env.close()


class EnvWorker:
    """The parent's handle on one worker process."""

    def __init__(self, env_name: str, options: dict[str, Any], index: int):
        self.env_name = env_name
        self.options = dict(options)
        self.index = index
        self._spawn()

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_serve, args=(child, self.env_name, self.options), name=f"openrlhf-act-env-{self.index}", daemon=True
        )
        self.process.start()
        child.close()
        self.child_pids: tuple[int, ...] = ()
        self.pending: str | None = None
        self.deadline = float("inf")

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def send(self, kind: str, payload: EnvTask | str, timeout: float) -> None:
        try:
            self.conn.send((kind, payload))
        except (OSError, ValueError) as exc:
            raise WorkerFailed(f"worker {self.index} is gone ({exc})") from exc
        self.pending = kind
        self.deadline = time.monotonic() + timeout

    def waitables(self) -> list[Any]:
        return [self.conn, self.process.sentinel]

    def has_answer(self) -> bool:
        """A reply is ready, or the process died (then :meth:`receive` raises)."""
        try:
            return self.conn.poll() or not self.process.is_alive()
        except (OSError, EOFError):
            return True

    def receive(self) -> Started | EnvStep:
        """The pending request's answer; raises :class:`WorkerFailed` for errors and crashes."""
        kind, self.pending, self.deadline = self.pending, None, float("inf")
        try:
            if not self.conn.poll():
                raise EOFError
            status, value = self.conn.recv()
        except (EOFError, OSError) as exc:
            code = self.process.exitcode
            raise WorkerFailed(f"environment process {self.pid} died during {kind} (exit code {code})") from exc
        if status != "ok":
            raise WorkerFailed(str(value))
        if isinstance(value, Started):
            self.child_pids = value.child_pids
        return value

    def overdue(self, now: float) -> bool:
        return self.pending is not None and now > self.deadline

    def kill(self) -> None:
        """Kill the worker and its simulator's helper processes (a hung JVM ignores everything else).

        A helper is killed only while it is still the worker's child, so a recycled pid is never hit."""
        helpers = [pid for pid in self.child_pids if self.pid is not None and _parent_of(pid) == self.pid]
        for pid in (*helpers, self.pid):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self.process.join(timeout=10)
        self.conn.close()

    def restart(self) -> None:
        self.kill()
        self._spawn()

    def close(self, timeout: float = 15.0) -> None:
        """Ask the worker to close its simulator; kill it if it does not exit in time."""
        if self.process.is_alive() and self.pending is None:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send((CLOSE, None))
            self.process.join(timeout=timeout)
        if self.process.is_alive():
            logger.warning("environment worker %s did not exit in time; killing it", self.pid)
            self.kill()
        else:
            self.conn.close()


class WorkerPool:
    """``size`` environment worker processes that outlive one run; a context manager that closes them."""

    def __init__(self, env_name: str, options: dict[str, Any] | None = None, size: int = 2):
        if size < 1:
            raise ValueError(f"an environment pool needs at least 1 worker, got {size}")
        self.env_name = env_name
        self.options = dict(options or {})
        self.workers = [EnvWorker(env_name, self.options, i) for i in range(size)]

    def settle(self) -> None:
        """Replace any worker left with an unanswered request (a run was interrupted): its late
        answer would otherwise be read as the next run's."""
        for worker in self.workers:
            if worker.pending is not None:
                worker.restart()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` (Linux ``/proc``); ``None`` when it is gone or unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
