"""Connections: what one client may hold of the server, and for how long.

uvicorn bounds neither the size of a request head nor the time a client may take to send
one: a 50 MB header is parsed by repeated concatenation (seconds of a blocked event loop),
a connection that sends nothing is kept forever, and once the process runs out of file
descriptors every new client fails with nothing said. ``GuardedProtocol`` is uvicorn's
httptools protocol with those bounds, the ones nginx puts in front of an application:

- a request head (request line and headers) larger than ``max_header_bytes`` is answered
  431 without being parsed further; a request target longer than ``max_url_bytes``, 414;
- a head must arrive within ``header_timeout`` of the connection opening (or of the first
  byte of the next request): 408, or a silent close if nothing came at all;
- a body must arrive within ``body_timeout`` of its head (``culm.api.limits`` answers 408
  first; this closes what is left: the rest of a body already answered 413, which is read
  and discarded so that the connection can serve the next request, but not for longer);
- a client that reads nothing while a response waits to be written is cut after
  ``send_timeout``;
- past ``max_connections`` open connections a new one is answered 503 at once, closed,
  and the refusals are logged (at most once a ``LOG_EVERY`` seconds, with their count).

Every answer is the API's JSON error shape with ``Connection: close``; the connection then
lingers a moment, reading and discarding what the client still sends, so that the client
reads the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from culm.api.wire import dumps

log = logging.getLogger("culm.api")

LINGER = 2.0
"""Seconds a connection answered by the guard keeps reading (and discarding) before it
closes, so the client's unread request does not turn the answer into a reset."""
LOG_EVERY = 10.0
"""Seconds between two log lines about refused connections."""
RESERVED_FILES = 128
"""File descriptors kept for the rest of the process (database, logs, pipes) below the
open-file limit when fitting ``max_connections`` under it."""
BODY_GRACE = 1.0
"""Seconds past ``body_timeout`` before the guard closes a connection whose body is
incomplete: the application's own 408 comes first."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds a ``GuardedProtocol`` enforces (see the module's docstring)."""

    max_connections: int = 4_096
    max_header_bytes: int = 65_536
    max_url_bytes: int = 8_192
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    send_timeout: float = 60.0


class _Refusals:
    """Connections refused since the last log line about them."""

    def __init__(self) -> None:
        self.count = 0
        self.logged_at = 0.0

    def refused(self, open: int, limit: int) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY:
            log.warning(
                "refused %d connection(s) with 503: %d are open, the limit "
                "(CULM_MAX_CONNECTIONS, or what the open-file limit allows) is %d",
                self.count,
                open,
                limit,
            )
            self.count = 0
            self.logged_at = now


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits``."""
    attributes = {"limits": limits, "refusals": _Refusals()}
    return type("GuardedProtocol", (GuardedProtocol,), attributes)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on head size, head, body and send time,
    and open connections; use ``guarded_protocol`` to make one with its limits."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    refusals: ClassVar[_Refusals] = _Refusals()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between requests too: what comes next is a head
        self._head_bytes = 0
        self._closing = False  # answered by the guard: discard everything from now on
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None

    # the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            self.refusals.refused(len(self.connections), self.limits.max_connections)
            self._answer(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "unavailable",
                f"the server has reached its limit of {self.limits.max_connections} open "
                "connections; try again shortly",
                extra=b"retry-after: 1\r\n",
            )
            return
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer, self._send_timer, self._linger):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._closing:  # answered already: nothing to wait for
            self.transport.close()
        else:
            super().shutdown()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._unset_keepalive_if_required()
        if self._in_head and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)
        while data and not self._closing:
            if self._in_head:
                # never feed the parser more of one head than the limit allows: a huge
                # header would otherwise be concatenated piece by piece, in quadratic time
                room = self.limits.max_header_bytes - self._head_bytes
                if room <= 0:
                    self._answer(
                        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "headers_too_large",
                        "the request line and headers are larger than the limit of "
                        f"{self.limits.max_header_bytes} bytes",
                    )
                    return
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            else:
                piece, data = data, b""
            if not self._feed(piece):
                return

    def _feed(self, data: bytes) -> bool:
        # uvicorn's own feeding, with a JSON answer for a request that is not HTTP
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError:
            if not self._closing:
                self._answer(HTTPStatus.BAD_REQUEST, "bad_request", "the request is not HTTP/1.1")
            return False
        return not self._closing

    # the parser's callbacks: nothing more is done once the guard has answered

    def on_message_begin(self) -> None:
        if not self._closing:
            super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._closing:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._closing:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._closing:
            return
        self._in_head = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.parser.should_upgrade() and self._should_upgrade():
            super().on_headers_complete()  # a WebSocket: no longer this protocol's business
            return
        if len(self.url) > self.limits.max_url_bytes:
            self._answer(
                HTTPStatus.REQUEST_URI_TOO_LONG,
                "uri_too_long",
                f"the request target is longer than the limit of {self.limits.max_url_bytes} bytes",
            )
            return
        self._body_timer = self.loop.call_later(
            self.limits.body_timeout + BODY_GRACE, self._body_late
        )
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._closing:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._closing:
            return
        self._in_head = True
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # writing to a client that does not read

    def pause_writing(self) -> None:
        if self.flow is None:  # a refused connection: its answer is all it gets
            return
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.limits.send_timeout, self._send_late)

    def resume_writing(self) -> None:
        if self.flow is None:
            return
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    # deadlines

    def _head_late(self) -> None:
        self._head_timer = None
        if self._closing or self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self.transport.close()  # nothing was asked: nothing to answer
            return
        self._answer(
            HTTPStatus.REQUEST_TIMEOUT,
            "request_timeout",
            f"the request head did not arrive within {self.limits.header_timeout:g} seconds",
        )

    def _body_late(self) -> None:
        self._body_timer = None
        if self._closing or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            self._answer(
                HTTPStatus.REQUEST_TIMEOUT,
                "request_timeout",
                f"the request body did not arrive within {self.limits.body_timeout:g} seconds",
            )
        else:
            self.transport.close()

    def _send_late(self) -> None:
        self._send_timer = None
        if not self.transport.is_closing():
            # close() would wait for the unread buffer to drain, which is the problem
            self.transport.abort()

    # answering by itself

    def _answer(self, status: HTTPStatus, code: str, message: str, extra: bytes = b"") -> None:
        """Write the JSON error, stop serving this connection, linger, then close."""
        self._closing = True
        if self.cycle is not None and not self.cycle.response_complete:
            # the application is not to answer this request any more: it reads a disconnect
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            if self.cycle.response_started:
                # a response is under way (a stream, say): an answer now would land in the
                # middle of it, so the connection is just closed
                self.transport.close()
                return
        body = dumps({"error": {"code": code, "message": message}})
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n"
        ).encode()
        self.transport.write(head + extra + b"\r\n" + body)
        self._hang_up()

    def _hang_up(self) -> None:
        """Read no more requests: half-close, discard what still comes for ``LINGER``
        seconds (so the client reads what was sent rather than a reset), then close."""
        self._closing = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger = self.loop.call_later(LINGER, self.transport.close)


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (where the system
    allows); returns the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    log.info("raised the open-file limit from %d to %d", soft, target)
    return target


def fit_connections(wanted: int, open_files: int) -> int:
    """``wanted`` connections, or fewer when the open-file limit cannot hold them and the
    files the rest of the process needs (logged when lowered)."""
    room = max(1, open_files - RESERVED_FILES)
    if wanted <= room:
        return wanted
    log.warning(
        "serving at most %d connections, not %d: the open-file limit is %d",
        room,
        wanted,
        open_files,
    )
    return room
