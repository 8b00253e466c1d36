"""The web dashboard: plain HTML, JavaScript modules and CSS shipped in the package.

The server answers ``/`` with the page and ``/dashboard/...`` with its files; the page
then talks to the same ``/v1`` API as every other client, with the caller's API key, so
it can see and do nothing a key could not. There is no build step and nothing is loaded
from anywhere else: the machines it runs on may have no internet.

The files are small (about 100 KB in all) and do not change while the server runs, so
they are read once and served from memory, each with an ETag the browser revalidates.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

__all__ = ["STATIC", "router"]

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

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class File:
    """One file of the dashboard, as served."""

    body: bytes
    media_type: str
    etag: str

    def response(self, request: Request) -> Response:
        headers = {**HEADERS, "ETag": self.etag}
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def load(directory: Path = STATIC) -> dict[str, File]:
    """Every file under ``directory`` by its relative path."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        body = path.read_bytes()
        media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        files[path.relative_to(directory).as_posix()] = File(
            body,
            media_type or "application/octet-stream",
            f'"{hashlib.sha256(body).hexdigest()[:32]}"',
        )
    return files


def router() -> APIRouter:
    """The routes that serve the dashboard: ``/`` and its files under ``/dashboard/``."""
    files = load()
    index = files["index.html"]
    routes = APIRouter(include_in_schema=False)

    @routes.get("/")
    async def page(request: Request) -> Response:
        return index.response(request)

    @routes.get("/dashboard/{path:path}")
    async def asset(path: str, request: Request) -> Response:
        found = files.get(path)
        if found is None:
            raise HTTPException(404, f"no file {path} in the dashboard")
        return found.response(request)

    return routes
