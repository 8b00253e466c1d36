"""The ``culm`` command: the typer app, its shared options, exit codes and error handling.

Expected failures (server unreachable, unknown id, conflicts, bad input) print one line
to stderr and exit 1; a traceback means a bug.

The client, the engine and the server are imported only by the commands that use them,
so ``culm --help`` starts in a fraction of a second.
"""

from __future__ import annotations

import enum
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from culm.client import Client

P = ParamSpec("P")
R = TypeVar("R")


class ExitCode(enum.IntEnum):
    """What ``culm`` exits with; a followed run's outcome gets a code of its own."""

    OK = 0
    ERROR = 1
    """The command could not do what was asked (unreachable server, unknown id...)."""
    USAGE = 2
    """Bad arguments (click's own code)."""
    RUN_FAILED = 3
    RUN_CANCELLED = 4
    RUN_INTERRUPTED = 5
    DETACHED = 130
    """Ctrl-C: stopped following; the run goes on (130 is the shell's code for SIGINT)."""


RUN_EXIT_CODES = {
    "completed": ExitCode.OK,
    "failed": ExitCode.RUN_FAILED,
    "cancelled": ExitCode.RUN_CANCELLED,
    "interrupted": ExitCode.RUN_INTERRUPTED,
}

app = typer.Typer(
    name="culm",
    help="Run LLM agents in the background; watch, steer and stop them from anywhere.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold API keys
    # plain help: rendering it with rich (markdown, panels) costs a third of the start-up
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"culm {version('culm')}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print culm's version and exit."
        ),
    ] = False,
) -> None:
    """Run LLM agents in the background; watch, steer and stop them from anywhere."""


Url = Annotated[
    str | None,
    typer.Option("--url", envvar="CULM_URL", help="Server URL (default: http://127.0.0.1:8000)."),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="CULM_API_KEY", help="API key (Bearer token)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def stdout() -> Console:
    # Piped output is read by programs and wide windows: never wrap tables at 80 columns.
    width = None if sys.stdout.isatty() else 240
    return Console(highlight=False, width=width)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def connect(url: str | None, api_key: str | None) -> Client:
    from culm.client import Client

    # how long a follower waits for a server that went away before giving up
    reconnect_for = float(os.environ.get("CULM_RECONNECT_FOR") or 60)
    return Client(url, api_key=api_key, reconnect_for=reconnect_for)


def fail(message: str, code: int = ExitCode.ERROR) -> typer.Exit:
    """Print ``message`` as an error; raise what this returns to exit with ``code``."""
    stderr().print(Text.assemble(("error: ", "bold red"), message))
    return typer.Exit(code)


@contextmanager
def expected_errors() -> Iterator[None]:
    """Turn the errors a user can cause or fix into a one-line message and exit 1."""
    from culm.client import AuthError, ClientError, ServerUnreachable
    from culm.errors import CulmError

    try:
        yield
    except ServerUnreachable as exc:
        hint = "is `culm serve` running there? (set --url or CULM_URL)"
        raise fail(f"{exc.message}\n       {hint}") from None
    except AuthError as exc:
        raise fail(f"{exc.message}\n       (pass --api-key or set CULM_API_KEY)") from None
    except (ClientError, CulmError) as exc:
        raise fail(exc.message) from None


def command(name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Register a command whose expected errors print as one line."""

    def register(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with expected_errors():
                return fn(*args, **kwargs)

        app.command(name)(wrapper)
        return wrapper

    return register


def main() -> Any:
    """Entry point of the ``culm`` script."""
    return app(prog_name="culm")
