"""The web dashboard: plain HTML, JavaScript modules and CSS shipped in the package.

The server answers ``/`` with the page and ``/dashboard/...`` with its files; the page
then talks to the same ``/v1`` API as every other client, with the caller's API key, so
it can see and do nothing a key could not. There is no build step and nothing is loaded
from anywhere else: the machines it runs on may have no internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["STATIC", "mount"]

STATIC = Path(__file__).parent / "static"
"""Where the page and its files are."""

HEADERS = {
    # revalidate on every load (a 304 costs little), so an upgraded server is never
    # paired with the previous version's modules still in the browser's cache
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # the page runs only its own files and talks only to this server
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}


class _Files(StaticFiles):
    """Static files with the dashboard's headers."""

    def file_response(
        self, full_path: str | Path, stat_result: object, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)  # type: ignore[arg-type]
        response.headers.update(HEADERS)
        return response


async def _index() -> Response:
    return FileResponse(STATIC / "index.html", headers=HEADERS)


def mount(api: FastAPI) -> None:
    """Serve the dashboard at ``/`` and its files under ``/dashboard/``."""
    api.add_api_route("/", _index, methods=["GET"], include_in_schema=False)
    api.mount("/dashboard", _Files(directory=STATIC), name="dashboard")
