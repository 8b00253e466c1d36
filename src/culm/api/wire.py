"""The JSON wire format at the HTTP edge: request bodies parsed and responses written by orjson.

Parsing with orjson rather than the standard library is a correctness choice as much as a
speed one: it refuses ``NaN``, lone surrogates and numbers that overflow a double, so every
body that gets past the parser can be stored and sent back as JSON unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette import responses
from starlette.types import Scope

MAX_CURSOR = 2**62
"""Largest ``after`` cursor accepted: sequence numbers and positions are 64-bit in the
database, and a bigger number could only be a mistake."""


def dumps(content: Any) -> bytes:
    """``content`` as JSON bytes; falls back to the standard encoder for what orjson refuses
    (integers past 64 bits), so an error response can always be written."""
    try:
        return orjson.dumps(content)
    except TypeError:
        return json.dumps(content, ensure_ascii=True, default=str).encode()


class JSONResponse(responses.JSONResponse):
    """A JSON response encoded once by orjson, with no validation pass in between."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


class Record(Protocol):
    """What a listing pages through: anything with an id that orders it, and a JSON shape."""

    @property
    def id(self) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


def page(records: Sequence[Record], limit: int) -> JSONResponse:
    """A listing page: ``next_cursor`` is the last id when the page is full, else null."""
    next_cursor = records[-1].id if len(records) == limit else None
    return JSONResponse({"data": [r.to_dict() for r in records], "next_cursor": next_cursor})


class _OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


def _as_json(scope: Scope) -> Scope:
    # Every body here is JSON, whatever Content-Type says: ``curl -d`` sends
    # application/x-www-form-urlencoded, and refusing that helps nobody.
    headers = scope["headers"]
    for name, value in headers:
        if name == b"content-type":
            if b"json" in value:
                return scope
            break
    kept = [(n, v) for n, v in headers if n != b"content-type"]
    return {**scope, "headers": [*kept, (b"content-type", b"application/json")]}


class OrjsonRoute(APIRoute):
    """A route whose body is parsed as JSON by orjson, whatever its Content-Type says
    (``orjson.JSONDecodeError`` is a ``json.JSONDecodeError``, so FastAPI still reports
    malformed bodies as such)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            scope = request.scope
            if scope["method"] in ("POST", "PUT", "PATCH"):
                scope = _as_json(scope)
            return await handler(_OrjsonRequest(scope, request.receive))

        return route
