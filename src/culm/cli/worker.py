"""``culm worker``: a process that claims queued runs from the shared database and
executes them, up to ``--concurrency`` at once; no HTTP. Any number run beside any number
of ``culm serve --role api`` processes (``CULM_ROLE=api``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from culm.agent.app import App, load_app
from culm.cli.app import app, fail
from culm.config import Settings
from culm.errors import InvalidInput

if TYPE_CHECKING:
    from culm.engine import Engine

DEFAULT_CONCURRENCY = 100


class _NotOpened(Exception):
    """The engine could not be opened; its cause says why (see ``startup_failure``)."""


@app.command()
def worker(
    target: Annotated[str, typer.Argument(help="Your agents as module:app.")],
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Most runs executed at once (env CULM_CONCURRENCY; 100)."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="The database the API processes share (env CULM_DATABASE_URL).",
        ),
    ] = None,
    bus_url: Annotated[
        str | None,
        typer.Option(
            "--bus-url",
            help="redis://... or postgresql://... (env CULM_BUS_URL; default: the "
            "database's LISTEN/NOTIFY).",
        ),
    ] = None,
    drain_seconds: Annotated[
        float | None,
        typer.Option(
            min=0, help="On SIGTERM, how long runs going on get to end (env CULM_DRAIN_SECONDS)."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve /metrics (Prometheus) and /healthz on this port (0: any free one).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="The address --metrics-port listens on.")
    ] = "127.0.0.1",
) -> None:
    """Claim and execute queued runs of the agents in TARGET until SIGTERM, then stop
    claiming, let the runs going on end within the drain deadline, hand back those that
    can be resumed elsewhere and interrupt the rest."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        agents = load_app(target)
    except (ImportError, InvalidInput, ValueError) as exc:
        raise fail(f"cannot load {target!r}: {exc}") from None
    overrides: dict[str, Any] = {"role": "worker"}
    for name, value in (
        ("concurrency", concurrency),
        ("database_url", database_url),
        ("bus_url", bus_url),
        ("drain_seconds", drain_seconds),
    ):
        if value is not None:
            overrides[name] = value
    try:
        settings = Settings(**overrides)
        if settings.concurrency is None:
            settings = Settings(**{**overrides, "concurrency": DEFAULT_CONCURRENCY})
    except ValueError as exc:
        raise fail(str(exc)) from None
    from culm.cli.serve import check_database, startup_failure

    problem = check_database(settings.database_url)
    if problem:
        raise fail(problem)
    # bound before the database is opened, so a port in use is said at once
    listener = None if metrics_port is None else _listen(metrics_host, metrics_port)
    try:
        asyncio.run(work(agents, settings, metrics=listener))
    except InvalidInput as exc:
        raise fail(exc.message) from None
    except _NotOpened as exc:
        raise fail(startup_failure(exc.__cause__, settings.database_url)) from None
    finally:
        if listener is not None:
            listener.close()


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for the metrics; the CLI's error if it cannot be."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind)
    except OSError as exc:
        raise fail(f"cannot serve metrics on {host}:{port}: {exc}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as exc:
        listener.close()
        raise fail(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    return listener


async def work(agents: App, settings: Settings, *, metrics: socket.socket | None = None) -> None:
    """Run an engine that only claims and executes, until SIGTERM or SIGINT; with a
    ``metrics`` socket, serve its ``/metrics`` and ``/healthz`` there until it has drained."""
    from culm.engine import Engine

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        try:
            engine = await stack.enter_async_context(Engine(agents, settings))
        except Exception as exc:
            raise _NotOpened() from exc
        await stack.enter_async_context(_probe(engine, settings, metrics))
        n = len(agents.agents)
        say(f"{engine.worker_id} ready: up to {settings.concurrency} runs of {n} agents")
        await stop.wait()
        say(f"draining {engine.executor.active} runs (up to {settings.drain_seconds:g}s)")
        left = await engine.drain(settings.drain_seconds)
        if left:
            say(f"{left} runs did not end in time; handing back or interrupting them")
    say("stopped")


@contextlib.asynccontextmanager
async def _probe(
    engine: Engine, settings: Settings, listener: socket.socket | None
) -> AsyncIterator[None]:
    """``/metrics`` and ``/healthz`` on ``listener`` while the block runs (nothing
    without one)."""
    if listener is None:
        yield
        return
    from culm.api.probe import probe_server

    server = probe_server(engine, settings)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
            raise InvalidInput("the metrics server stopped as it started")
        await asyncio.sleep(0.01)
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    say(f"metrics on http://{shown}:{port}/metrics")
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)


def say(line: str) -> None:
    print(f"culm worker: {line}", file=sys.stderr, flush=True)
