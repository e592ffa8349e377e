"""What keeps a server process answering under overload, at shutdown and with slow clients.

- `GuardedHttp`, uvicorn's httptools protocol with two bounds uvicorn lacks: each request's
  headers must arrive within `serve.header_timeout_s` (uvicorn only times out idle keep-alive
  connections, so a client dribbling headers holds its connection forever), and past
  `serve.max_connections` open connections the oldest one still sending its headers is closed to
  make room, so slow clients cannot use up the file descriptors normal ones need.
- `Guard`, an ASGI middleware: a prediction request is admitted or shed when it arrives, before
  its body is read, so turning one away costs next to nothing; a shed request gets 503 with
  `Retry-After` and `Connection: close` (a load balancer then sends the retry elsewhere). While
  the server drains, every answer carries `Connection: close`.
- `drain_on_signals`: SIGTERM turns readiness off at once and keeps serving for `serve.drain_s`
  (the endpoints of a Service take seconds to stop routing to a terminating pod), then hands over
  to uvicorn's shutdown: the listener closes and in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import signal
from asyncio import TimerHandle, Transport
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import uvicorn
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SHED_MESSAGE = "server is at its queue limit; retry later"
_SHED_HEADERS = [(b"retry-after", b"1"), (b"connection", b"close")]
_CLOSE = (b"connection", b"close")


class GuardedConfig(uvicorn.Config):  # type: ignore[misc]  # uvicorn is not type-checked here
    """uvicorn's config plus the bounds `GuardedHttp` enforces (picklable: workers get a copy)."""

    def __init__(
        self, app: Any, *, header_timeout_s: float, max_connections: int, **kwargs: Any
    ) -> None:
        super().__init__(app, http=GuardedHttp, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections
        # Connections still sending a request's headers, oldest first (per process).
        self.awaiting_headers: dict[GuardedHttp, None] = {}


class GuardedHttp(HttpToolsProtocol):  # type: ignore[misc]
    config: GuardedConfig
    _header_timer: TimerHandle | None = None

    def connection_made(self, transport: Transport) -> None:
        super().connection_made(transport)
        self._await_headers()
        if len(self.connections) > self.config.max_connections:
            oldest = next(iter(self.config.awaiting_headers))  # this one at least
            oldest.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # the next request on a kept-alive connection
            self._await_headers()

    def on_headers_complete(self) -> None:
        self._headers_arrived()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self.config.awaiting_headers[self] = None
        self._header_timer = self.loop.call_later(
            self.config.header_timeout_s, self.transport.close
        )

    def _headers_arrived(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self.config.awaiting_headers.pop(self, None)


class Guard:
    """Sheds prediction requests on arrival while `probe(scope)` says the server is full, with
    each route's own error body; closes every connection while it says the server drains."""

    def __init__(
        self,
        app: ASGIApp,
        shed_bodies: Sequence[tuple[BaseRoute, bytes]],
        probe: Callable[[Scope], tuple[bool, bool]],
    ) -> None:
        self.app = app
        self.shed_bodies = shed_bodies
        self.probe = probe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        full, draining = self.probe(scope)
        body = self._shed_body(scope) if full else None
        if body is not None:
            length = (b"content-length", str(len(body)).encode())
            headers = [(b"content-type", b"application/json"), length, *_SHED_HEADERS]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if not draining:
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), _CLOSE]
            await send(message)

        await self.app(scope, receive, send_closing)

    def _shed_body(self, scope: Scope) -> bytes | None:
        """The 503 body if `scope` is a prediction request, else None."""
        for route, body in self.shed_bodies:
            if route.matches(scope)[0] is Match.FULL:
                scope["route"] = route  # for the request metrics' endpoint label
                return body
        return None


def drain_on_signals(begin_drain: Callable[[], None], drain_s: float) -> None:
    """SIGTERM: `begin_drain()` now, uvicorn's graceful shutdown after `drain_s`. SIGINT, or a
    second signal: the shutdown at once."""
    loop = asyncio.get_running_loop()
    draining = [False]
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(
            sig: int, frame: FrameType | None, previous: Callable[..., Any] = previous
        ) -> None:
            first = not draining[0]
            draining[0] = True
            begin_drain()
            delay = drain_s if sig == signal.SIGTERM and first else 0.0
            loop.call_soon_threadsafe(loop.call_later, delay, previous, sig, frame)

        signal.signal(signum, handler)
