"""``culm serve``: the HTTP server over the user's agents (or the built-in examples)."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from culm.agent.app import load_app
from culm.cli.app import app, fail
from culm.config import Settings
from culm.errors import InvalidInput

EXAMPLES = "culm.examples:app"


def parse_keys(pairs: list[str]) -> dict[str, str]:
    """``KEY=TENANT`` pairs as a dict; raises ``InvalidInput`` naming a malformed one."""
    keys: dict[str, str] = {}
    for pair in pairs:
        key, sep, tenant = pair.partition("=")
        if not sep or not key or not tenant:
            raise InvalidInput(f"--api-key wants KEY=TENANT, got {pair!r}")
        keys[key] = tenant
    return keys


@app.command()
def serve(
    target: Annotated[
        str,
        typer.Argument(help="Your agents as module:app (default: the built-in examples)."),
    ] = EXAMPLES,
    host: Annotated[str, typer.Option(help="Interface to bind; non-loopback needs keys.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="sqlite:///path or postgresql://... (env CULM_DATABASE_URL; "
            "default sqlite:///culm.db).",
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
) -> None:
    """Serve the HTTP API (and run the agents) on the embedded default: SQLite, one
    process, nothing else to start."""
    # Like uvicorn: `culm serve myagents:app` finds myagents.py in the current directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        agents = load_app(target)
    except (ImportError, InvalidInput, ValueError) as exc:
        raise fail(f"cannot load {target!r}: {exc}") from None
    overrides: dict[str, Any] = {}
    if database_url:
        overrides["database_url"] = database_url
    try:
        if api_key:
            overrides["api_keys"] = parse_keys(api_key)
        settings = Settings(**overrides)
    except (InvalidInput, ValueError) as exc:
        raise fail(str(exc)) from None
    from culm.api.server import serve as run_server  # the API's imports, only when serving

    try:
        run_server(agents, settings, host=host, port=port)
    except InvalidInput as exc:
        raise fail(exc.message) from None
