"""Every failure leaves the API as ``{"error": {"code", "message"}}`` with the right status.

``culm.errors`` classes map to statuses here and nowhere else; request validation, unknown
routes, unauthenticated calls and oversized bodies get the same shape, so a client needs
one error path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from culm.api.schemas import Error
from culm.api.wire import JSONResponse
from culm.errors import (
    Conflict,
    CulmError,
    InvalidInput,
    NotFound,
    RunFinished,
    SessionBusy,
    Unavailable,
)

_STATUS: list[tuple[type[CulmError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (Unavailable, 503),
]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid_request",
    431: "headers_too_large",
    503: "unavailable",
}


def error_response(
    status: int,
    code: str,
    message: str,
    /,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """The one error shape, for handlers and for middleware that answers by itself."""
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers
    )


def error_docs(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error statuses a route may answer with."""
    return {status: {"model": Error} for status in statuses}


async def _culm_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CulmError)
    status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 400)
    extra: dict[str, Any] = {}
    if isinstance(exc, SessionBusy):
        extra = {"session_id": exc.session_id, "active_run_id": exc.active_run_id}
    elif isinstance(exc, RunFinished):
        extra = {"run_id": exc.run_id, "status": exc.status}
    return error_response(status, exc.code, exc.message, **extra)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            return error_response(
                400, "malformed_json", f"the request body is not valid JSON: {reason}".rstrip(": ")
            )
    details = [
        {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in errors
    ]
    message = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details)
    return error_response(422, "invalid_request", message or "invalid request", details=details)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
        return error_response(405, "method_not_allowed", message, headers={"Allow": allowed})
    else:
        message = str(exc.detail)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, message, headers=exc.headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves on this path: Starlette's own 405 names only those
    of the first route it tried, which for ``/v1/runs`` (GET and POST) is half the truth."""
    methods: set[str] = set()
    for route in request.app.state.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this response is sent, so the server logs the traceback
    return error_response(500, "internal_error", "the server failed to handle this request")


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the error shape."""
    app.add_exception_handler(CulmError, _culm_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
