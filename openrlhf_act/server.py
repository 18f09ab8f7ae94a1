"""HTTP reward service speaking OpenRLHF's remote reward-model protocol.

OpenRLHF (``--reward.remote_url http://host:port/get_reward``) POSTs ``{"query": [str], "prompts":
[str], "labels": [...]}`` once per sample and expects ``{"rewards", "scores", "extra_logs"}`` back
(``openrlhf/utils/agent.py``, ``SingleTurnAgentExecutor._fetch_rewards_via_http``). Serving the
reward over HTTP keeps the rollout actors free of our package and lets one service score several runs.

Small requests (OpenRLHF sends one sample each) are scored inline in the event loop: the reward takes
microseconds. Large bodies are parsed and scored in a worker thread, so ``/health`` and other clients keep
being answered. Connections are bounded and timed (:mod:`openrlhf_act.server_connections`); ``--workers N``
forks N processes that share the port; :func:`openrlhf_act.server_workers.serve` runs one worker or
supervises N.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from openrlhf_act import __version__
from openrlhf_act.repeated_logs import REPEATS
from openrlhf_act.rewards.base import STATS
from openrlhf_act.rewards.batch import as_openrlhf_dict
from openrlhf_act.rewards.catalog import RewardSpec
from openrlhf_act.rewards.config import RewardConfig
from openrlhf_act.server_connections import BodyBudget, ConnectionGuard

logger = logging.getLogger("openrlhf_act.server")

TOKEN_ENV = "OPENRLHF_ACT_SERVE_TOKEN"
REWARD_PATHS = ("/get_reward", "/")
HEALTH_PATH = "/health"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Bodies above this size are parsed and scored off the event loop.
INLINE_BODY_BYTES = 64 * 2**10
# After the shutdown grace, aiohttp gets this long to close the connections still open.
CLOSE_S = 1.0


class ServeError(RuntimeError):
    """The service could not start (bad address, port in use, a worker failed at start)."""


class BadRequest(ValueError):
    """A request OpenRLHF's protocol does not allow; answered with 400 and this message."""


@dataclass(frozen=True)
class ServeOptions:
    """Everything a worker needs; built once by the command, shared by forked workers.

    Defaults are documented in docs/serving.md (and by ``serve-reward --help``)."""

    spec: RewardSpec
    config: RewardConfig
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1
    token: str | None = None
    max_request_bytes: int = 16 * 2**20
    max_buffered_bytes: int = 256 * 2**20
    max_connections: int = 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 15.0
    shutdown_grace_s: float = 10.0


def parse_batch(body: bytes) -> tuple[list[Any], list[Any] | None, list[Any] | None]:
    """Validate one request body; return (queries, prompts, labels). ``None`` for an absent list."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("body is JSON nested too deeply") from None
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

    __slots__ = ("disconnects", "inflight", "rejected", "requests", "samples", "timeouts")

    def __init__(self) -> None:
        self.inflight = self.requests = self.samples = self.rejected = self.timeouts = self.disconnects = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "samples": self.samples,
            "rejected": self.rejected,
            "timeouts": self.timeouts,
            "disconnects": self.disconnects,
        }


class _Disconnected(Exception):
    """The client went away while sending its body."""


def build_app(
    options: ServeOptions,
    traffic: Traffic | None = None,
    guard: ConnectionGuard | None = None,
    scorer: ThreadPoolExecutor | None = None,
) -> Any:
    """The aiohttp application: ``POST /get_reward`` (alias ``POST /``) and ``GET /health``.

    ``guard`` (the connection guard of the listening socket) learns when a request's headers are in;
    ``scorer`` is the thread that parses and scores large bodies (inline when ``None``)."""
    from aiohttp import web

    spec, config = options.spec, options.config
    keys = spec.log_keys
    token = options.token.encode() if options.token else None
    limit_mb = options.max_request_bytes / 2**20
    traffic = traffic if traffic is not None else Traffic()
    budget = BodyBudget(options.max_buffered_bytes)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def error(status: int, message: str, **headers: str) -> web.Response:
        traffic.rejected += 1
        logger.debug("%d: %s", status, message)
        body = dumps({"error": message}).encode()
        return web.Response(status=status, body=body, headers=headers, content_type="application/json")

    def parse_and_score(body: bytes) -> tuple[bytes, int]:
        queries, prompts, labels = parse_batch(body)
        results = spec.score(queries, prompts, labels, config)
        return dumps(as_openrlhf_dict(results, keys, scalar=False)).encode(), len(results)

    async def read_body(request: web.Request) -> bytes:
        try:
            return await asyncio.wait_for(request.read(), options.body_timeout_s)
        except ConnectionError as exc:  # aiohttp: "Connection lost" when the peer vanishes mid-body
            raise _Disconnected(exc) from None

    async def score(request: web.Request) -> web.Response:
        if token is not None and not token_matches(request.headers.get("Authorization"), token):
            return error(401, "missing or wrong token", **{"WWW-Authenticate": "Bearer"})
        declared = request.content_length
        if declared is not None and declared > options.max_request_bytes:
            return error(413, f"request body exceeds {limit_mb:g} MB (--max-request-mb)")
        reserved = declared if declared is not None else options.max_request_bytes
        if not budget.take(reserved):
            return error(
                503, "busy: too many request bytes being received (--max-buffer-mb); retry", **{"Retry-After": "1"}
            )
        try:
            body = await read_body(request)
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"request body exceeds {limit_mb:g} MB (--max-request-mb)")
        except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on
            traffic.timeouts += 1
            response = error(408, f"request body not received within {options.body_timeout_s:g} s (--body-timeout)")
            # Answer, then close: neither wait for the rest of the body (aiohttp would, up to 10 s) nor read it
            # as a next request.
            await response.prepare(request)
            await response.write_eof()
            if request.transport is not None:
                request.transport.close()
            return response
        except _Disconnected as exc:
            traffic.disconnects += 1
            logger.info("client %s disconnected while sending its request (%s)", request.remote, exc)
            return error(400, "client disconnected")
        finally:
            budget.give(reserved)
        try:
            if scorer is not None and len(body) > INLINE_BODY_BYTES:
                payload, samples = await asyncio.get_running_loop().run_in_executor(scorer, parse_and_score, body)
            else:
                payload, samples = parse_and_score(body)
        except BadRequest as exc:
            return error(400, str(exc))
        traffic.requests += 1
        traffic.samples += samples  # counted here, on the event loop, not in the scoring thread
        return web.Response(body=payload, content_type="application/json")

    async def get_reward(request: web.Request) -> web.Response:
        traffic.inflight += 1
        if guard is not None:
            guard.request_started(request.protocol)
        try:
            return await score(request)
        finally:
            traffic.inflight -= 1
            if guard is not None:
                guard.request_finished(request.protocol)

    async def health(request: web.Request) -> web.Response:
        payload = {
            "status": "ok",
            "reward": spec.name,
            "version": __version__,
            "log_keys": list(keys),
            "stats": STATS.snapshot(),
            "pid": os.getpid(),
            "counters": traffic.snapshot(),
            "connections": guard.snapshot() if guard is not None else None,
        }
        return web.Response(body=dumps(payload).encode(), content_type="application/json")

    app = web.Application(client_max_size=options.max_request_bytes)
    for path in REWARD_PATHS:
        app.router.add_post(path, get_reward)
    app.router.add_get(HEALTH_PATH, health)
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def reward_url(host: str, port: int, *, token: bool = False) -> str:
    """The URL to give OpenRLHF: a wildcard address is replaced by this machine's name, and a token
    becomes the credential placeholder OpenRLHF's client turns into Basic auth."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    credentials = "act:<token>@" if token else ""
    return f"http://{credentials}{shown}:{port}{REWARD_PATHS[0]}"


def announce(options: ServeOptions, port: int) -> None:
    url = reward_url(options.host, port, token=bool(options.token))
    lines = [f"openrlhf-act: serving reward {options.spec.name!r} with {options.workers} worker(s) on port {port}"]
    if options.token:
        lines.append("openrlhf-act: token required; in the URL below replace <token> with it (OpenRLHF sends it)")
    if not is_loopback(options.host):
        lines.append(
            f"openrlhf-act: listening on {options.host}, reachable from other machines"
            + ("" if options.token else "; WARNING: no --token, anyone who can reach this port can use the service")
        )
    lines.append(f"openrlhf-act: pass it to OpenRLHF as --reward.remote_url {url}")
    print("\n".join(lines), flush=True)


def raise_fd_limit(max_connections: int) -> None:
    """Let the process hold ``--max-connections`` sockets (a common soft limit is 1024 files, which would
    make ``accept`` fail before the connection bound answers 503); warn when the hard limit is lower."""
    try:
        import resource
    except ImportError:  # not on Unix
        return
    needed = max_connections + 128  # the listening socket, logs, the loop's own descriptors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            logger.warning(
                "open-file limit %d is below --max-connections %d + 128: lower --max-connections or raise `ulimit -Hn`",
                target,
                max_connections,
            )


async def serve_until_signal(
    options: ServeOptions, on_ready: Callable[[int], None], *, reuse_port: bool = False
) -> None:
    """Listen, call ``on_ready(port)``, serve until SIGTERM/SIGINT, then finish in-flight requests within
    ``options.shutdown_grace_s`` (counted from the signal) and close everything within ``CLOSE_S`` more."""
    from aiohttp import web

    raise_fd_limit(options.max_connections)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    traffic = Traffic()
    scorer = ThreadPoolExecutor(1, thread_name_prefix="openrlhf-act-score")
    runner = None
    guard = None
    try:
        # The guard is built before the app (the app reports request starts to it) and bound to aiohttp's
        # protocol factory once the runner exists.
        guard = ConnectionGuard(
            lambda: runner.server(),
            max_connections=options.max_connections,
            header_timeout_s=options.header_timeout_s,
        )
        app = build_app(options, traffic, guard, scorer)
        runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=CLOSE_S, keepalive_timeout=options.keepalive_timeout_s
        )
        await runner.setup()
        try:
            listener = await loop.create_server(guard, options.host, options.port, reuse_port=reuse_port, backlog=1024)
        except OSError as exc:
            raise ServeError(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}") from None
        on_ready(listener.sockets[0].getsockname()[1])
        while not stop.is_set():  # the summaries of repeated warnings come out even when traffic stops
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), REPEATS.period_s)
            REPEATS.flush()
        deadline = loop.time() + options.shutdown_grace_s
        logger.info("worker %d: shutting down, finishing %d in-flight request(s)", os.getpid(), traffic.inflight)
        listener.close()  # refuse new connections
        guard.close_idle()
        # aiohttp's own shutdown drops bytes still arriving on open connections, so a request whose
        # body is half received would be lost: wait for running handlers first, up to the grace.
        while traffic.inflight and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if traffic.inflight:
            logger.warning("worker %d: %d request(s) cut off after the shutdown grace", os.getpid(), traffic.inflight)
    finally:
        if runner is not None:
            await runner.cleanup()
        scorer.shutdown(wait=False, cancel_futures=True)
        REPEATS.flush()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (as uvicorn does), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_worker(options: ServeOptions, on_ready: Callable[[int], None], *, reuse_port: bool = False) -> None:
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve_until_signal(options, on_ready, reuse_port=reuse_port))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
