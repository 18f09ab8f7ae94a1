"""The one environment pool: simulators in worker processes, one per process, driven over a pipe.

Data collection, replay, alternative verification, ``eval episodes`` and the online executor all run
their environments here, so crash and hang handling, timeouts and shutdown exist once.

Simulators block (a JVM call, a PDDL step, an HTTP request) and can die (the JVM is killed, a game
hangs), so each one lives in its own process started with ``spawn``. The parent sends ``start`` (load
and reset an episode) or ``step`` (one action), or ``snapshot`` / ``restore`` where the adapter can save
its state (the snapshots stay in the worker, named by a token), and waits on the pipe *and* the process
sentinel with a deadline: a reply, a crash and a hang are all noticed in bounded time. A hung or dead worker is
killed together with the helper processes its adapter reported (``TextEnv.child_pids``) and replaced.

A :class:`WorkerPool` keeps workers alive across runs: evaluating several checkpoints or splits through
one pool pays the simulators' start (and a JVM's JIT warm-up, which dominates short ScienceWorld
runs) once. Two ways to drive it: :meth:`WorkerPool.run` plays scripted jobs (collection, replay,
verification: a ``play(session, job)`` function per job, one thread per worker, results handed back
in the calling thread), and the non-blocking :class:`EnvWorker` primitives (``send`` / ``has_answer`` /
``receive`` / ``overdue``) let ``eval episodes`` batch one policy call across all workers.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing import connection
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

from openrlhf_act.envs.base import EnvError, EnvStep, EnvTask, TextEnv

logger = logging.getLogger(__name__)

START = "start"
STEP = "step"
EXPERT = "expert"  # the loaded episode's expert actions (TextEnv.expert_actions)
SNAPSHOT = "snapshot"  # save the running episode (TextEnv.snapshot); answers a token for RESTORE
RESTORE = "restore"  # back to the snapshot a token names
CLOSE = "close"
DEFAULT_START_TIMEOUT = 180.0  # a cold JVM plus a large world build
DEFAULT_STEP_TIMEOUT = 60.0

Job = TypeVar("Job")
Result = TypeVar("Result")


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
    snapshots: list[Any] = []  # this episode's, indexed by token: they live here, never cross the pipe
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
                    snapshots.clear()
                    first = env.reset()
                    reply: Any = Started(env.task_description, first, env.max_steps, env.score_scale, env.child_pids)
                elif env is None:
                    raise EnvError(f"{kind} before start")
                elif kind == EXPERT:
                    reply = env.expert_actions()
                elif kind == SNAPSHOT:
                    snapshots.append(env.snapshot())
                    reply = len(snapshots) - 1
                elif kind == RESTORE:
                    reply = env.restore(snapshots[payload])
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
        self.closed = False
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
        self.broken = False  # the pipe failed: the process is dead or dying, even if not reaped yet

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def send(self, kind: str, payload: EnvTask | str | int | None, timeout: float) -> None:
        try:
            self.conn.send((kind, payload))
        except (OSError, ValueError) as exc:
            self.broken = True
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

    def receive(self) -> Any:
        """The pending request's answer; raises :class:`WorkerFailed` for errors and crashes."""
        kind, self.pending, self.deadline = self.pending, None, float("inf")
        try:
            if not self.conn.poll():
                raise EOFError
            status, value = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.broken = True
            code = self.process.exitcode
            raise WorkerFailed(f"environment process {self.pid} died during {kind} (exit code {code})") from exc
        if status != "ok":
            raise WorkerFailed(str(value))
        if isinstance(value, Started):
            self.child_pids = value.child_pids
        return value

    def overdue(self, now: float) -> bool:
        return self.pending is not None and now > self.deadline

    def request(self, kind: str, payload: EnvTask | str | int | None, timeout: float) -> Any:
        """Send one request and wait for its answer (blocking). A worker that hangs past ``timeout``
        or dies is replaced before :class:`WorkerFailed` is raised, so the next request finds a
        fresh simulator."""
        try:
            self.send(kind, payload, timeout)
        except WorkerFailed:  # it died while idle
            self.restart()
            raise
        # an answer or a death wakes this; the process may look alive a moment after its pipes closed
        if not connection.wait(self.waitables(), timeout=timeout):
            self.restart()
            raise WorkerFailed(f"environment worker {self.index} gave no answer to {kind} within {timeout:.0f} s")
        try:
            return self.receive()
        except WorkerFailed:
            if self.broken or not self.process.is_alive():
                self.restart()
            raise

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
        """Replace the worker; not once closed (a job still running as its pool closes starts nothing)."""
        if self.closed:
            return
        self.kill()
        self._spawn()

    def close(self, timeout: float = 15.0) -> None:
        """Ask the worker to close its simulator; kill it if it does not exit in time."""
        self.closed = True
        if self.process.is_alive() and self.pending is None:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send((CLOSE, None))
            self.process.join(timeout=timeout)
        if self.process.is_alive():
            logger.warning("environment worker %s did not exit in time; killing it", self.pid)
            self.kill()
        else:
            self.conn.close()


class EnvSession:
    """One worker lent to one job: blocking ``start`` / ``step`` / ``expert`` / ``snapshot`` / ``restore``
    with the pool's timeouts."""

    def __init__(self, worker: EnvWorker, start_timeout: float, step_timeout: float):
        self.worker = worker
        self.start_timeout = start_timeout
        self.step_timeout = step_timeout

    def start(self, task: EnvTask) -> Started:
        """Load and reset ``task``."""
        return self.worker.request(START, task, self.start_timeout)

    def step(self, action: str) -> EnvStep:
        return self.worker.request(STEP, action, self.step_timeout)

    def expert(self) -> list[str] | None:
        """The loaded episode's expert actions (None: the environment has no expert)."""
        return self.worker.request(EXPERT, None, self.step_timeout)

    def snapshot(self) -> int:
        """Save the running episode (adapters with ``TextEnv.snapshots``); the token is for :meth:`restore`
        and valid until the next :meth:`start`."""
        return self.worker.request(SNAPSHOT, None, self.step_timeout)

    def restore(self, token: int) -> None:
        self.worker.request(RESTORE, token, self.step_timeout)


@dataclass(frozen=True)
class JobFailed:
    """A job whose environment crashed, hung or failed on every attempt."""

    error: str
    attempts: int


class WorkerPool(Generic[Job, Result]):
    """``size`` environment worker processes that outlive one run; a context manager that closes them."""

    def __init__(self, env_name: str, options: dict[str, Any] | None = None, size: int = 2):
        if size < 1:
            raise ValueError(f"an environment pool needs at least 1 worker, got {size}")
        from openrlhf_act.envs.registry import env_class

        self.env_name = env_name
        self.options = dict(options or {})
        # What each worker's simulator starts with (ScienceWorld: the JVM's GC picked for this many workers).
        self.worker_options = env_class(env_name).worker_options(self.options, size)
        self.workers = [EnvWorker(env_name, self.worker_options, i) for i in range(size)]

    def settle(self) -> None:
        """Replace any worker left with an unanswered request (a run was interrupted): its late
        answer would otherwise be read as the next run's."""
        for worker in self.workers:
            if worker.pending is not None:
                worker.restart()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()

    def run(
        self,
        jobs: Iterable[Job],
        play: Callable[[EnvSession, Job], Result],
        on_done: Callable[[Job, Result | JobFailed], None],
        *,
        retries: int = 1,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        step_timeout: float = DEFAULT_STEP_TIMEOUT,
    ) -> None:
        """Play every job: ``play(session, job)`` runs in one thread per worker; ``on_done(job,
        result)`` runs in the calling thread as each finishes (where results are written, so a
        crash loses nothing finished). A job whose worker crashed, hung or failed is retried
        ``retries`` times on a fresh simulator, then reported as :class:`JobFailed`.

        The first Ctrl-C lets every worker finish its current job (their results are still handed
        to ``on_done``), then raises ``KeyboardInterrupt``; a second one stops waiting. An exception
        from ``play`` (a bug, not an environment failure) stops the run and is raised here."""
        todo: queue.SimpleQueue[Job] = queue.SimpleQueue()
        for job in jobs:
            todo.put(job)
        done: queue.SimpleQueue[tuple[Job, Any] | BaseException | None] = queue.SimpleQueue()
        stop = threading.Event()

        def drive(worker: EnvWorker) -> None:
            session = EnvSession(worker, start_timeout, step_timeout)
            try:
                while not stop.is_set():
                    try:
                        job = todo.get_nowait()
                    except queue.Empty:
                        break
                    done.put((job, _attempts(play, session, job, retries)))
            except BaseException as exc:  # a bug in play: stop everything, raise it in the caller
                stop.set()
                done.put(exc)
            finally:
                done.put(None)

        self.settle()
        threads = [threading.Thread(target=drive, args=(w,), daemon=True) for w in self.workers]
        for thread in threads:
            thread.start()
        running, interrupted, failure = len(threads), False, None
        try:
            while running:
                try:  # Ctrl-C may land in on_done too: the job it was handing over is redone on resume
                    item = done.get(timeout=0.5)
                    if item is None:
                        running -= 1
                    elif isinstance(item, BaseException):
                        failure = failure or item
                    else:
                        on_done(*item)
                except queue.Empty:
                    continue
                except KeyboardInterrupt:
                    if interrupted:
                        raise
                    interrupted = True
                    stop.set()
                    logger.warning("interrupted: workers finish their current job (Ctrl-C again to abort)")
        finally:
            stop.set()  # an exception from on_done, or a second Ctrl-C: no worker takes another job
        if failure is not None:
            raise failure
        if interrupted:
            raise KeyboardInterrupt

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _attempts(play: Callable[[EnvSession, Job], Result], session: EnvSession, job: Job, retries: int) -> Any:
    """``play`` the job, again on a fresh simulator after each environment failure."""
    error = ""
    for attempt in range(1, retries + 2):
        try:
            return play(session, job)
        except WorkerFailed as exc:
            logger.warning("job %s (attempt %d) failed: %s", job, attempt, exc)
            error = str(exc)
    return JobFailed(error, retries + 1)


def _parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` (Linux ``/proc``); ``None`` when it is gone or unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
