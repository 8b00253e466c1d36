"""What ``culm serve`` logs: one line per request, one per run state change, as text or JSON.

- ``configure(level, fmt)`` sends culm's and uvicorn's loggers to stderr, as
  ``HH:MM:SS LEVEL  message`` or one JSON object a line (``fmt="json"``).
- ``AccessLog`` is ASGI middleware: ``GET /v1/runs 200 1.4ms`` once each response ends.
- ``RunLog`` follows every event of this process's bus and logs the runs' state changes;
  a failed run's traceback (``data.traceback`` of ``run.failed``) is logged with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from culm.bus.fanout import ALL, Subscription
from culm.engine import Engine
from culm.events import Event

access_log = logging.getLogger("culm.access")
run_log = logging.getLogger("culm.runs")

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")

_STATE_CHANGES = {
    "run.queued": "queued",
    "run.started": "started",
    "run.waiting": "waiting",
    "run.resumed": "resumed",
    "run.completed": "completed",
    "run.failed": "failed",
    "run.cancelled": "cancelled",
    "run.interrupted": "interrupted",
}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts``, ``level``, ``logger``, ``message`` and the record's
    ``culm`` fields (run id, status...), plus ``exc`` when there is a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "culm", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


_format = "text"


def configure(level: str = "info", fmt: str = "text") -> None:
    """Route culm's and uvicorn's logs to stderr at ``level``, as text or JSON.

    uvicorn's own lines say what the banner says: below ``debug`` only its warnings show.
    """
    global _format
    _format = fmt
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
        )
    quiet = "DEBUG" if level == "debug" else "WARNING"
    for name, at in (("culm", level.upper()), ("uvicorn", quiet), ("uvicorn.error", quiet)):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(at)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # AccessLog says it more briefly


class AccessLog:
    """Logs each request once its response has ended: method, path, status, duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            took = (time.perf_counter() - began) * 1000
            path = scope.get("path", "")
            query = scope.get("query_string", b"").decode("latin-1")
            target = f"{path}?{query}" if query else path
            access_log.info(
                "%s %s %s %.1fms",
                scope.get("method", ""),
                target,
                status or "-",
                took,
                extra={
                    "culm": {
                        "method": scope.get("method"),
                        "path": path,
                        "status": status,
                        "ms": round(took, 2),
                    }
                },
            )


def describe(event: Event) -> tuple[int, str, dict[str, Any]] | None:
    """The log line a run event makes (level, message, fields), None if it is no state
    change."""
    state = _STATE_CHANGES.get(event.type)
    if state is None:
        return None
    data = event.data
    fields: dict[str, Any] = {"run_id": event.run_id, "status": state}
    detail = ""
    level = logging.INFO
    if state == "queued" and data.get("agent"):
        detail = f" ({data['agent']})"
        fields["agent"] = data["agent"]
    elif state in ("failed", "interrupted"):
        level = logging.WARNING if state == "interrupted" else logging.ERROR
        error = data.get("error") or data.get("reason") or ""
        fields["error"] = error
        detail = f": {error}" if error else ""
        if data.get("traceback"):
            fields["traceback"] = data["traceback"]
            detail += "\n" + str(data["traceback"]).rstrip()
    elif state == "cancelled":
        who = data.get("by")
        why = data.get("reason")
        detail = (f" by {who}" if who else "") + (f": {why}" if why else "")
    return level, f"run {event.run_id} {state}{detail}", fields


async def follow_runs(engine: Engine) -> None:
    """Log the state changes of every run of this process until cancelled; what was
    already delivered when it is cancelled is logged too (the runs a shutdown
    interrupted)."""
    with engine.bus.subscribe((ALL,), 10_000) as feed:
        try:
            while True:
                _log_batch(feed, await feed.next())
        except asyncio.CancelledError:
            _log_batch(feed, await feed.next(timeout=0))
            raise


def _log_batch(feed: Subscription, events: list[Event]) -> None:
    if feed.lagged:  # a burst beyond the buffer: its lines are skipped, not queued
        feed.resync()
        run_log.warning("run log fell behind; some state changes were not logged")
    for event in events:
        line = describe(event)
        if line is not None:
            level, message, fields = line
            run_log.log(level, message, extra={"culm": fields})


def announce(text: str) -> None:
    """Print the start-up banner: as it is on a terminal, as one log record in JSON."""
    if _format == "json":
        logging.getLogger("culm").info(text.splitlines()[0], extra={"culm": {"banner": text}})
    else:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def install(api: FastAPI, ready: Callable[[], None] | None = None) -> None:
    """Add the access log and, while the server runs, the run log to ``api``; ``ready`` is
    called once the engine is open."""
    api.add_middleware(AccessLog)
    inner: Callable[[Any], Any] = api.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        follower: asyncio.Task[None] | None = None
        try:
            async with inner(app) as state:
                follower = asyncio.create_task(follow_runs(app.state.engine))
                if ready is not None:
                    ready()
                yield state
        finally:  # after the engine closed: the runs it interrupted are logged
            if follower is not None:
                follower.cancel()
                with suppress(asyncio.CancelledError):
                    await follower

    api.router.lifespan_context = lifespan
