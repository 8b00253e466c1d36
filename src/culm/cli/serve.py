"""``culm serve``: the HTTP server over the user's agents (or the built-in examples).

Everything that can be found wrong before serving is checked first, in this order, and
reported as one line saying what to do: the application (importable, no syntax error),
the address (allowed without keys, port in range and free), the database URL (supported,
openable; nothing is created by the check). Only then is the server started, with a
banner saying where everything is.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import re
import socket
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from culm.cli.app import app, fail

if TYPE_CHECKING:
    from culm.agent.app import App
    from culm.config import Settings

EXAMPLES = "culm.examples:app"
DATABASES = "sqlite:///PATH or postgresql://USER@HOST/DB"
"""The database URLs ``culm serve`` accepts, as its help shows them."""
POSTGRES_DRIVER = "pip install 'culm[postgres]'"


def parse_keys(pairs: list[str]) -> dict[str, str]:
    """``KEY=TENANT`` pairs as a dict; raises ``ValueError`` naming a malformed one."""
    keys: dict[str, str] = {}
    for pair in pairs:
        key, sep, tenant = pair.partition("=")
        if not sep or not key or not tenant:
            raise ValueError(f"--api-key wants KEY=TENANT, got {pair!r}")
        keys[key] = tenant
    return keys


def check_port(host: str, port: int) -> str | None:
    """Why ``culm serve`` cannot listen on ``host:port``, or None when it can."""
    if not 1 <= port <= 65535:
        return f"--port {port} is out of range: use a port from 1 to 65535"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                holder = _port_holder(port)
                return (
                    f"port {port} on {host} is already in use{holder}: stop that server, "
                    f"or pick another port with --port {port + 1 if port < 65535 else 8000}"
                )
            if exc.errno == errno.EACCES:
                return f"no permission to listen on port {port}: use a port above 1023"
            return f"cannot listen on {host}:{port}: {exc.strerror} (check --host)"
    return None


def _port_holder(port: int) -> str:
    """`` (by culm serve, pid 123)`` when the system says who listens there, else ``""``."""
    try:
        import psutil

        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    return ""
                name = " ".join(psutil.Process(conn.pid).cmdline()[:4]) or "?"
                return f" (by {name}, pid {conn.pid})"
    except Exception:  # best effort only: no psutil, or no right to look
        return ""
    return ""


def check_database(url: str) -> str | None:
    """Why the database at ``url`` cannot be used, or None when it can be opened."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("asyncpg") is None:
            return f"PostgreSQL needs the asyncpg driver: {POSTGRES_DRIVER}"
        return None  # reached when the server opens it, which says why if it cannot
    if scheme != "sqlite":
        return f"unsupported database URL {url!r}: use {DATABASES} (e.g. sqlite:///culm.db)"
    rest = url.split(":", 1)[1]
    if not rest.startswith("///"):
        return f"a SQLite URL has three slashes before its path: sqlite:///culm.db, not {url!r}"
    path = rest[3:].split("?", 1)[0]
    if path in ("", ":memory:"):
        return "culm needs a SQLite file, e.g. sqlite:///culm.db, not an in-memory database"
    target = Path(path)
    if target.is_dir():
        return f"the database path {path} is a directory: name a file, e.g. {path}/culm.db"
    folder = target.parent
    if not folder.is_dir():
        return f"cannot open the database {path}: directory {folder} does not exist"
    import sqlite3

    if not target.exists():
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"cannot create the database {path}: no permission to write in {folder}"
        return None
    if not os.access(target, os.W_OK):  # SQLite would open it read-only, and fail later
        return f"the database {path} is read-only: make it writable (chmod u+w {path})"
    try:
        connection = sqlite3.connect(f"file:{target}?mode=rw", uri=True, timeout=1)
        try:
            connection.execute("PRAGMA user_version").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        return f"cannot open the database {path}: {exc} (check its path and permissions)"
    return None


def hide_password(url: str) -> str:
    """``url`` with its password, if any, as ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def startup_failure(cause: BaseException | None, database_url: str) -> str:
    """The one line saying why the server could not start, and what to do about it."""
    url = hide_password(database_url)
    if cause is None:  # uvicorn said why, above
        return "the server did not start (see the lines above)"
    root = _root(cause)
    reason = " ".join(f"{type(root).__name__}: {root}".split())
    if isinstance(root, ModuleNotFoundError):
        fix = POSTGRES_DRIVER if root.name == "asyncpg" else f"pip install {root.name}"
        return f"cannot open the database {url}: no module named {root.name!r} ({fix})"
    if type(root).__module__.startswith("alembic"):
        return (
            f"cannot migrate the database {url}: {reason} (was it made by a newer culm? "
            "upgrade culm, or use another database)"
        )
    if isinstance(root, OSError | TimeoutError):
        return (
            f"cannot reach the database {url}: {reason} "
            "(is the database server running there? check --database-url)"
        )
    if "readonly" in reason.lower():
        return f"cannot write the database {url}: {reason} (make it writable)"
    return f"the server could not start with the database {url}: {reason}"


def _root(exc: BaseException) -> BaseException:
    """The error underneath: through culm's own wrappers (``raise ... from``) and
    SQLAlchemy's (``.orig``, the driver's error)."""
    from culm.errors import CulmError

    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        orig = getattr(exc, "orig", None)
        if isinstance(orig, BaseException):
            exc = orig
        elif isinstance(exc, CulmError) and exc.__cause__ is not None:
            exc = exc.__cause__
    return exc


def load_target(target: str) -> App:
    """The application ``module:app`` names; ``typer.Exit`` with one line when it cannot
    be loaded (missing module, syntax error with its file and line, no ``culm.App``)."""
    from culm.agent.app import load_app
    from culm.errors import InvalidInput

    # Like uvicorn: `culm serve myagents:app` finds myagents.py in the current directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return load_app(target)
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else target
        raise fail(f"cannot load {target!r}: syntax error at {where}: {exc.msg}") from None
    except ModuleNotFoundError as exc:
        raise fail(
            f"cannot load {target!r}: no module named {exc.name!r} "
            "(run culm serve where the module is, or check its name)"
        ) from None
    except InvalidInput as exc:
        raise fail(f"cannot load {target!r}: {exc.message}") from None
    except Exception as exc:
        import traceback

        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise fail(
            f"cannot load {target!r}: {type(exc).__name__}: {exc} "
            f"(at {frame.filename}:{frame.lineno})"
        ) from None


def preload_providers(agents: App) -> threading.Thread | None:
    """Import the model providers the agents name, in a background thread.

    The openai SDK (which ``local:`` models use too) takes about a second of CPU to
    import; imported by the first run that needs it, it would stall the server's event
    loop, and so every other run and request, for that long.
    """
    models = [str(spec.details.get("model") or "") for spec in agents.agents.values()]
    if not any(m.startswith(("openai:", "local:")) for m in models):
        return None
    thread = threading.Thread(
        target=importlib.import_module, args=("culm.llm.local",), name="culm-preload", daemon=True
    )
    thread.start()
    return thread


def banner(
    url: str, settings: Settings, agents: App, target: str, paths: Iterable[str] = ()
) -> str:
    """What ``culm serve`` prints once it is ready: where to reach it and what it runs.
    ``paths`` are the server's routes: a dashboard among them is shown too."""
    names = ", ".join(sorted(agents.agents)) or "none"
    source = "built-in examples" if target == EXAMPLES else target
    lines = [
        f"culm serving {url}",
        f"  database  {settings.database_url}",
        f"  agents    {names}  ({source})",
        f"  API docs  {url}/docs",
    ]
    if any(p.startswith("/dashboard") for p in paths):  # its files; the page is at /
        lines.append(f"  dashboard {url}/")
    lines.append(f"  try       culm run {_example_agent(agents)} --follow")
    return "\n".join(lines)


def _example_agent(agents: App) -> str:
    for name, args in (("countdown", " 3"), ("assistant", ' "What is the capital of France?"')):
        if name in agents.agents:
            return name + args
    return next(iter(sorted(agents.agents)), "AGENT")


@app.command()
def serve(
    target: Annotated[
        str,
        typer.Argument(help="Your agents as module:app (default: the built-in examples)."),
    ] = EXAMPLES,
    host: Annotated[str, typer.Option(help="Interface to bind; non-loopback needs keys.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on (1-65535).")] = 8000,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help=f"{DATABASES} (env CULM_DATABASE_URL; default sqlite:///culm.db).",
        ),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            metavar="KEY=TENANT",
            help="Accept this API key for this tenant; repeatable (env CULM_API_KEYS).",
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option("--log-level", help="debug, info, warning or error.", envvar="CULM_LOG_LEVEL"),
    ] = "info",
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format", help="text, or json (one object a line).", envvar="CULM_LOG_FORMAT"
        ),
    ] = "text",
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            help="all: serve the API and execute runs (the default); api: serve the API "
            "only, leaving runs to `culm worker` processes (env CULM_ROLE).",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (and run the agents) on the embedded default: SQLite, one
    process, nothing else to start."""
    if role is not None and role not in ("all", "api"):
        raise fail(f"--role {role!r}: use all or api (workers run as `culm worker`)")
    from culm.api.logs import FORMATS, LEVELS

    if log_level.lower() not in LEVELS:
        raise fail(f"--log-level {log_level!r}: use one of {', '.join(LEVELS)}")
    if log_format.lower() not in FORMATS:
        raise fail(f"--log-format {log_format!r}: use text or json")
    agents = load_target(target)
    settings = _settings(database_url, api_key, role)
    preload_providers(agents)

    from culm.api import logs
    from culm.api.server import StartupFailed, check_bind
    from culm.api.server import serve as run_server
    from culm.errors import InvalidInput

    try:
        check_bind(host, settings)
    except InvalidInput as exc:
        raise fail(exc.message) from None
    for problem in (check_port(host, port), check_database(settings.database_url)):
        if problem:
            raise fail(problem)
    url = f"http://{host}:{port}"

    def extend(api: Any) -> None:
        logs.configure(log_level.lower(), log_format.lower())
        # every route, as the app lists them (FastAPI keeps included routers whole)
        paths = [getattr(route, "path", "") for route in api.state.routes]
        text = banner(url, settings, agents, target, paths)
        logs.install(api, ready=lambda: logs.announce(text))

    try:
        run_server(agents, settings, host=host, port=port, extend=extend)
    except InvalidInput as exc:
        raise fail(exc.message) from None
    except StartupFailed as exc:
        raise fail(startup_failure(exc.cause, settings.database_url)) from None


def _settings(
    database_url: str | None, api_key: list[str] | None, role: str | None = None
) -> Settings:
    from pydantic import ValidationError

    from culm.config import Settings

    overrides: dict[str, Any] = {}
    if database_url:
        overrides["database_url"] = database_url
    if role:
        overrides["role"] = role
    try:
        if api_key:
            overrides["api_keys"] = parse_keys(api_key)
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise fail(f"invalid settings: {problems} (check the CULM_* environment)") from None
    except ValueError as exc:
        raise fail(str(exc)) from None
