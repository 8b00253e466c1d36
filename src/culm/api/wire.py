"""The JSON wire format at the HTTP edge: request bodies parsed and responses written by orjson.

Every body is parsed by ``culm.payload.loads`` with the server's limits: it refuses
``NaN``, lone surrogates, nesting past ``max_json_depth`` and integers past 64 bits (which a
plain parser would turn into floats), so every body that gets past it can be stored and
sent back as JSON unchanged, and one that cannot is a 422 that names the bad part.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette import responses
from starlette.types import Scope

from culm.errors import InvalidInput
from culm.payload import InvalidPayload, Limits, loads

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


class BadRequest(InvalidInput):
    """A request the HTTP layer refuses before any route sees it (422 ``invalid_request``)."""

    code = "invalid_request"


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def parse_body(body: bytes, limits: Limits) -> Any:
    """The body as checked JSON: ``InvalidPayload`` (422) for what cannot be stored,
    ``RequestValidationError`` of type ``json_invalid`` (400) for what is not JSON."""
    try:
        return loads(body, limits, what="body")
    except json.JSONDecodeError as exc:
        if "depth limit" in exc.msg:  # orjson's own ceiling (1,024 levels) is past ours
            raise InvalidPayload(
                f"body: nested more than {limits.max_depth} levels deep (the limit)"
            ) from None
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error]) from None


def refuse_nul(scope: Scope) -> None:
    """A NUL character in the path or the query can match nothing and some databases
    refuse it outright: it is a 422 here rather than an error deeper down."""
    if "\x00" in scope["path"]:
        raise BadRequest("the path holds a NUL character")
    if b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]:
        raise BadRequest("the query string holds a NUL character (%00)")


class _OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_body(await self.body(), self.app.state.settings.payload_limits)
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
    """A route whose body is parsed (once, before the route's own validation) by
    ``parse_body`` whatever its Content-Type says, and whose path and query may not hold
    a NUL character."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            scope = request.scope
            refuse_nul(scope)
            if scope["method"] in _BODY_METHODS:
                scope = _as_json(scope)
            parsed = _OrjsonRequest(scope, request.receive)
            if scope["method"] in _BODY_METHODS and await parsed.body():
                await parsed.json()  # errors here are culm's (422) or malformed JSON (400)
            return await handler(parsed)

        return route
