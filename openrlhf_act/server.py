"""HTTP reward service speaking OpenRLHF's remote reward-model protocol.

OpenRLHF (``--reward.remote_url http://host:port/get_reward``) POSTs ``{"query": [str], "prompts":
[str], "labels": [...]}`` once per sample and expects ``{"rewards", "scores", "extra_logs"}`` back
(``openrlhf/utils/agent.py``, ``SingleTurnAgentExecutor._fetch_rewards_via_http``). Serving the
reward over HTTP keeps the rollout actors free of our package and lets one service score several runs.

The reward is computed inline in the event loop: it takes microseconds, so a thread pool would cost
more than it saves. ``--workers N`` forks N processes that share the port (SO_REUSEPORT); the parent
only supervises them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openrlhf_act import __version__
from openrlhf_act.registry import RewardSpec
from openrlhf_act.rewards.base import STATS
from openrlhf_act.rewards.batch import as_openrlhf_dict
from openrlhf_act.rewards.config import RewardConfig

logger = logging.getLogger("openrlhf_act.server")

TOKEN_ENV = "OPENRLHF_ACT_SERVE_TOKEN"
REWARD_PATHS = ("/get_reward", "/")
HEALTH_PATH = "/health"
# In-flight requests get this long to finish after SIGTERM/SIGINT (the reward itself takes microseconds;
# what can be slow is a client still sending its body).
SHUTDOWN_GRACE_S = 30.0
WORKER_START_TIMEOUT_S = 60.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ServeError(RuntimeError):
    """The service could not start (bad address, port in use, a worker failed at start)."""


class BadRequest(ValueError):
    """A request OpenRLHF's protocol does not allow; answered with 400 and this message."""


@dataclass(frozen=True)
class ServeOptions:
    """Everything a worker needs; built once by the command, shared by forked workers."""

    spec: RewardSpec
    config: RewardConfig
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1
    token: str | None = None
    max_request_bytes: int = 16 * 2**20


def parse_batch(body: bytes) -> tuple[list[Any], list[Any] | None, list[Any] | None]:
    """Validate one request body; return (queries, prompts, labels). ``None`` for an absent list."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f'body must be a JSON object {{"query": [...], ...}}, got {type(data).__name__}')
    queries = data.get("query")
    if not isinstance(queries, list):
        raise BadRequest('"query" must be a list of strings (prompt + response)')
    if not queries:
        raise BadRequest('empty batch: "query" has no items')
    columns = []
    for key in ("prompts", "labels"):
        column = data.get(key)
        if column is not None:
            if not isinstance(column, list):
                raise BadRequest(f'"{key}" must be a list')
            if len(column) != len(queries):
                raise BadRequest(f'"{key}" has {len(column)} items but "query" has {len(queries)}')
        columns.append(column)
    return queries, columns[0], columns[1]


def token_matches(header: str | None, token: bytes) -> bool:
    """``Authorization: Bearer <token>``, or Basic auth whose password is the token.

    Basic auth matters because OpenRLHF's client sends no headers of its own, but aiohttp turns the
    credentials of ``http://user:<token>@host:port/get_reward`` into a Basic header.
    """
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        given = value.strip().encode()
    elif scheme == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            return False
    else:
        return False
    return hmac.compare_digest(given, token)


class Traffic:
    """Per-process request counters; ``inflight`` lets shutdown wait for handlers still running."""

    __slots__ = ("inflight", "rejected", "requests", "samples")

    def __init__(self) -> None:
        self.inflight = self.requests = self.samples = self.rejected = 0

    def snapshot(self) -> dict[str, int]:
        return {"requests": self.requests, "samples": self.samples, "rejected": self.rejected}


def build_app(options: ServeOptions, traffic: Traffic | None = None) -> Any:
    """The aiohttp application: ``POST /get_reward`` (alias ``POST /``) and ``GET /health``."""
    from aiohttp import web

    spec, config = options.spec, options.config
    keys = spec.log_keys
    token = options.token.encode() if options.token else None
    limit_mb = options.max_request_bytes / 2**20
    traffic = traffic if traffic is not None else Traffic()
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def error(status: int, message: str, **headers: str) -> web.Response:
        traffic.rejected += 1
        logger.debug("%d: %s", status, message)
        body = dumps({"error": message}).encode()
        return web.Response(status=status, body=body, headers=headers, content_type="application/json")

    async def score(request: web.Request) -> web.Response:
        if token is not None and not token_matches(request.headers.get("Authorization"), token):
            return error(401, "missing or wrong token", **{"WWW-Authenticate": "Bearer"})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"request body exceeds {limit_mb:g} MB (--max-request-mb)")
        try:
            queries, prompts, labels = parse_batch(body)
        except BadRequest as exc:
            return error(400, str(exc))
        results = spec.score(queries, prompts, labels, config)
        traffic.requests += 1
        traffic.samples += len(results)
        payload = dumps(as_openrlhf_dict(results, keys, scalar=False)).encode()
        return web.Response(body=payload, content_type="application/json")

    async def get_reward(request: web.Request) -> web.Response:
        traffic.inflight += 1
        try:
            return await score(request)
        finally:
            traffic.inflight -= 1

    async def health(request: web.Request) -> web.Response:
        payload = {
            "status": "ok",
            "reward": spec.name,
            "version": __version__,
            "log_keys": list(keys),
            "stats": STATS.snapshot(),
            "pid": os.getpid(),
            "counters": traffic.snapshot(),
        }
        return web.Response(body=dumps(payload).encode(), content_type="application/json")

    app = web.Application(client_max_size=options.max_request_bytes)
    for path in REWARD_PATHS:
        app.router.add_post(path, get_reward)
    app.router.add_get(HEALTH_PATH, health)
    return app


def reward_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{REWARD_PATHS[0]}"


async def _serve_until_signal(options: ServeOptions, on_ready: Callable[[int], None]) -> None:
    """Listen, call ``on_ready(port)``, then serve until SIGTERM/SIGINT; finish in-flight requests."""
    from aiohttp import web

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    traffic = Traffic()
    runner = web.AppRunner(build_app(options, traffic), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port, reuse_port=options.workers > 1)
        try:
            await site.start()
        except OSError as exc:
            raise ServeError(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}") from None
        on_ready(runner.addresses[0][1])
        await stop.wait()
        logger.info("worker %d: shutting down, finishing %d in-flight request(s)", os.getpid(), traffic.inflight)
        await site.stop()  # refuse new connections
        # aiohttp's own shutdown drops bytes still arriving on open connections, so a request whose
        # body is half received would be lost: wait for running handlers first.
        deadline = loop.time() + SHUTDOWN_GRACE_S
        while traffic.inflight and loop.time() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await runner.cleanup()


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (as uvicorn does), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _run_worker(options: ServeOptions, on_ready: Callable[[int], None]) -> None:
    loop = _new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve_until_signal(options, on_ready))
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _announce(options: ServeOptions, port: int) -> None:
    url = reward_url(options.host, port)
    auth = " (token required: http://act:<token>@... or 'Authorization: Bearer <token>')" if options.token else ""
    print(
        f"openrlhf-act: serving reward {options.spec.name!r} with {options.workers} worker(s) on {url}{auth}\n"
        f"openrlhf-act: pass it to OpenRLHF as --reward.remote_url {url}",
        flush=True,
    )


def serve(options: ServeOptions) -> int:
    """Run the service in the foreground until SIGTERM/SIGINT; return the exit code."""
    if options.workers < 1:
        raise ServeError("--workers must be at least 1")
    if options.workers == 1:
        _run_worker(options, lambda port: _announce(options, port))
        return 0
    if options.port == 0:
        raise ServeError("--port 0 (any free port) works only with --workers 1: workers must share one port")
    return _supervise(options)


def _worker_main(options: ServeOptions, ready: Any) -> None:
    """Entry of a forked worker: report readiness (or the start error) to the parent, then serve."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    try:
        _run_worker(options, lambda port: ready.put((os.getpid(), None)))
    except ServeError as exc:
        ready.put((os.getpid(), str(exc)))
        sys.exit(1)


def _supervise(options: ServeOptions) -> int:
    """Fork the workers, forward SIGTERM/SIGINT to them by pid, report crashes, exit when all exit."""
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("fork")  # workers inherit the loaded reward and config
    ready = ctx.Queue()
    workers: list[multiprocessing.process.BaseProcess] = []
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in _STOP_SIGNALS}
    try:
        for _ in range(options.workers):
            if stopping:
                break
            worker = ctx.Process(target=_worker_main, args=(options, ready), daemon=False)
            # A signal must not reach a child before it drops the parent's handlers (it would forward it).
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            try:
                worker.start()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            workers.append(worker)
        if _wait_ready(workers, ready, lambda: stopping):
            _announce(options, options.port)
        return _reap(workers, wait, lambda: stopping)
    except BaseException:
        forward(signal.SIGTERM, None)
        for worker in workers:
            worker.join(SHUTDOWN_GRACE_S)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ready.close()


def _wait_ready(workers: list, ready: Any, stopping: Callable[[], bool]) -> bool:
    """Until every worker listens: ``True``; ``False`` when a stop signal came first."""
    import queue

    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    pending = {worker.pid for worker in workers}
    while pending:
        if stopping():
            return False
        try:
            pid, problem = ready.get(timeout=0.1)
        except queue.Empty:
            for worker in workers:
                if worker.pid in pending and worker.exitcode is not None:
                    raise ServeError(f"worker {worker.pid} exited with code {worker.exitcode} before serving") from None
            if time.monotonic() > deadline:
                raise ServeError(f"workers did not start within {WORKER_START_TIMEOUT_S:g} s") from None
            continue
        if problem:
            raise ServeError(f"worker {pid}: {problem}")
        pending.discard(pid)
    return True


def _reap(workers: list, wait: Callable, stopping: Callable[[], bool]) -> int:
    """Wait for every worker; a worker that exits on its own (no signal from us) is a crash."""
    crashed = False
    alive = {worker.sentinel: worker for worker in workers}
    while alive:
        for sentinel in wait(list(alive)):
            worker = alive.pop(sentinel)
            worker.join()
            code = worker.exitcode
            clean = code == 0 or (stopping() and code in (-signal.SIGTERM, -signal.SIGINT))
            if not clean or not stopping():
                crashed = True
                logger.error(
                    "worker %d exited with %s; %d worker(s) still serving",
                    worker.pid,
                    f"signal {-code}" if code is not None and code < 0 else f"code {code}",
                    len(alive),
                )
    return 1 if crashed else 0
