"""Running the reward service: one worker in the foreground, or ``--workers N`` forked processes
sharing the port (SO_REUSEPORT), supervised.

The parent only supervises: it forwards SIGTERM/SIGINT to the workers by pid, replaces a worker that dies
on its own (giving up when they keep dying), and exits when all have exited. Workers die with the parent
whatever kills it (Linux's parent-death signal), so a ``kill -9`` of the parent frees the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from openrlhf_act.server import STOP_SIGNALS, ServeError, ServeOptions, announce, run_worker

logger = logging.getLogger("openrlhf_act.server")

WORKER_START_TIMEOUT_S = 60.0
# More crashes than this within the window: the workers cannot run, stop instead of restarting forever.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
_PR_SET_PDEATHSIG = 1


def serve(options: ServeOptions) -> int:
    """Run the service in the foreground until SIGTERM/SIGINT; return the exit code."""
    if options.workers < 1:
        raise ServeError("--workers must be at least 1")
    if options.workers == 1:
        run_worker(options, lambda port: announce(options, port))
        return 0
    if options.port == 0:
        raise ServeError("--port 0 (any free port) works only with --workers 1: workers must share one port")
    return supervise(options)


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies (Linux); exit now if it is already gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent_pid:
        os._exit(0)


def _worker_main(options: ServeOptions, ready: Any, parent_pid: int) -> None:
    """Entry of a forked worker: report readiness (or the start error) to the parent, then serve."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    die_with_parent(parent_pid)
    try:
        run_worker(options, lambda port: ready.put((os.getpid(), None)), reuse_port=True)
    except ServeError as exc:
        ready.put((os.getpid(), str(exc)))
        sys.exit(1)


class _Pool:
    """The workers, the readiness queue, and the stop flag set by a forwarded signal."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.ctx = multiprocessing.get_context("fork")  # workers inherit the loaded reward and config
        self.ready = self.ctx.Queue()
        self.workers: list[multiprocessing.process.BaseProcess] = []
        self.stopping = False

    def start_one(self) -> multiprocessing.process.BaseProcess:
        worker = self.ctx.Process(target=_worker_main, args=(self.options, self.ready, os.getpid()), daemon=False)
        # A signal must not reach a child before it drops the parent's handlers (it would forward it).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            worker.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self.workers.append(worker)
        return worker

    def forward(self, signum: int, frame: object = None) -> None:
        self.stopping = True
        for worker in self.workers:
            if worker.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signum)


def supervise(options: ServeOptions) -> int:
    """Fork the workers, forward SIGTERM/SIGINT to them by pid, replace crashed ones, exit when all exit."""
    pool = _Pool(options)
    previous = {sig: signal.signal(sig, pool.forward) for sig in STOP_SIGNALS}
    try:
        for _ in range(options.workers):
            if pool.stopping:
                break
            pool.start_one()
        if _wait_ready(pool):
            announce(options, options.port)
        return _reap(pool)
    except BaseException:
        pool.forward(signal.SIGTERM)
        for worker in pool.workers:
            worker.join(options.shutdown_grace_s + 5)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pool.ready.close()


def _wait_ready(pool: _Pool) -> bool:
    """Until every worker listens: ``True``; ``False`` when a stop signal came first."""
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    pending = {worker.pid for worker in pool.workers}
    while pending:
        if pool.stopping:
            return False
        try:
            pid, problem = pool.ready.get(timeout=0.1)
        except queue.Empty:
            for worker in pool.workers:
                if worker.pid in pending and worker.exitcode is not None:
                    raise ServeError(f"worker {worker.pid} exited with code {worker.exitcode} before serving") from None
            if time.monotonic() > deadline:
                raise ServeError(f"workers did not start within {WORKER_START_TIMEOUT_S:g} s") from None
            continue
        if problem:
            raise ServeError(f"worker {pid}: {problem}")
        pending.discard(pid)
    return True


def _describe(code: int | None) -> str:
    return f"signal {-code}" if code is not None and code < 0 else f"code {code}"


def _reap(pool: _Pool, wait: Callable | None = None) -> int:
    """Wait for every worker. One that exits without a signal from us crashed: it is replaced, unless
    more than ``MAX_RESTARTS`` crashed within ``RESTART_WINDOW_S`` (then all stop and the exit code is 1)."""
    from multiprocessing.connection import wait as wait_any

    wait = wait or wait_any
    crashed = False
    restarts: list[float] = []
    alive = {worker.sentinel: worker for worker in pool.workers}
    while alive:
        for sentinel in wait(list(alive), timeout=1.0):
            worker = alive.pop(sentinel)
            worker.join()
            code = worker.exitcode
            if pool.stopping and code in (0, -signal.SIGTERM, -signal.SIGINT):
                continue
            crashed = True
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
            if pool.stopping or len(restarts) > MAX_RESTARTS:
                logger.error("worker %d exited with %s; %d worker(s) still serving", worker.pid, _describe(code),
                             len(alive))  # fmt: skip
                if not pool.stopping:
                    logger.error("workers keep crashing (%d in %g s): stopping the service", len(restarts),
                                 RESTART_WINDOW_S)  # fmt: skip
                    pool.forward(signal.SIGTERM)
                continue
            replacement = pool.start_one()
            alive[replacement.sentinel] = replacement
            logger.error("worker %d exited with %s; started worker %d in its place", worker.pid, _describe(code),
                         replacement.pid)  # fmt: skip
        with contextlib.suppress(queue.Empty, OSError, ValueError):
            while True:  # readiness of replacements: drained so that their queue feeders never block
                pool.ready.get_nowait()
    return 1 if crashed else 0
