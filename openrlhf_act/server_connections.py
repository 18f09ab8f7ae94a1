"""What a reward service exposed to a cluster needs beyond aiohttp's defaults: bounded connections,
a header timeout, and a bound on the request bodies held in memory.

aiohttp closes idle keep-alive connections itself (``keepalive_timeout``) but lets a client take as long as it
likes to send a request's headers, accepts any number of connections, and buffers each body up to the size
limit. :class:`ConnectionGuard` wraps each of aiohttp's per-connection protocols (only the public
``asyncio.Protocol`` interface): it refuses connections beyond the bound with a 503, and closes a connection
whose request headers are not complete in time. :class:`BodyBudget` bounds the bytes of request bodies being
read at once, over all connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from openrlhf_act.repeated_logs import REPEATS

logger = logging.getLogger("openrlhf_act.server")
# One line per refused connection would flood the log under attack: once a minute, then a count.
limits_logger = logging.getLogger("openrlhf_act.server.limits")
limits_logger.addFilter(REPEATS)

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s"
)


class BodyBudget:
    """Bytes of request bodies being read, over all connections of a worker (one event loop: no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


class ConnectionGuard:
    """Counts open connections and builds the guarded protocol for each new one."""

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        *,
        max_connections: int,
        header_timeout_s: float,
    ) -> None:
        self._factory = protocol_factory
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.by_inner: dict[Any, _GuardedProtocol] = {}  # aiohttp's protocol -> its guard: the open connections
        self.refused = 0
        self.header_timeouts = 0

    def __call__(self) -> asyncio.Protocol:
        return _GuardedProtocol(self, self._factory())

    def request_started(self, inner: Any) -> None:
        """Called by the application when a request's headers are in (its handler runs)."""
        guarded = self.by_inner.get(inner)
        if guarded is not None:
            guarded.busy = True
            guarded.cancel_header_timer()

    def request_finished(self, inner: Any) -> None:
        guarded = self.by_inner.get(inner)
        if guarded is not None:
            guarded.busy = False

    def snapshot(self) -> dict[str, int]:
        return {"open": len(self.by_inner), "refused": self.refused, "header_timeouts": self.header_timeouts}

    def close_idle(self) -> None:
        """At shutdown: close connections with no request in progress."""
        for guarded in list(self.by_inner.values()):
            if not guarded.busy and guarded.transport is not None:
                guarded.transport.close()

    def _refuse(self, transport: asyncio.Transport) -> None:
        self.refused += 1
        limits_logger.warning(
            "connection limit reached (%d open, --max-connections): a connection was refused with 503",
            len(self.by_inner),
        )
        body = b'{"error":"too many connections; retry"}'
        transport.write(_BUSY % (len(body), body))
        transport.close()


class _GuardedProtocol(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol; adds the connection bound and the header timeout."""

    def __init__(self, guard: ConnectionGuard, inner: Any) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.refused = False
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        if len(self.guard.by_inner) >= self.guard.max_connections:
            self.refused = True
            self.guard._refuse(transport)
            return
        self.transport = transport
        self.guard.by_inner[self.inner] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if not self.busy and self._header_timer is None:  # the first bytes of a new request
            loop = asyncio.get_running_loop()
            self._header_timer = loop.call_later(self.guard.header_timeout_s, self._header_timed_out)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self.refused else self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self.cancel_header_timer()
        self.guard.by_inner.pop(self.inner, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if not self.refused:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if not self.refused:
            self.inner.resume_writing()

    def cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self.busy and self.transport is not None:
            self.guard.header_timeouts += 1
            logger.debug("closed a connection whose request headers took over %g s", self.guard.header_timeout_s)
            self.transport.close()
