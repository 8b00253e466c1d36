"""Bad input gets the right 4xx in the error shape, and never changes what is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_error

JSON = {"Content-Type": "application/json"}
BIG = "x" * 70_000  # the test server's limit is 65,536 bytes

BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    # method, path, request keywords, status, code
    ("POST", "/v1/runs", {"json": {"agent": "nope"}}, 404, "not_found"),
    ("POST", "/v1/runs", {"json": {"agent": "count", "input": "x"}}, 422, "invalid_input"),
    ("POST", "/v1/runs", {"json": {"agent": "count"}}, 422, "invalid_input"),
    ("POST", "/v1/runs", {"json": {"agent": "count", "input": 1e30}}, 422, "invalid_input"),
    ("POST", "/v1/runs", {"content": b'{"agent":', "headers": JSON}, 400, "malformed_json"),
    (
        "POST",
        "/v1/runs",
        {"content": b'{"agent":"echo","input":NaN}', "headers": JSON},
        400,
        "malformed_json",
    ),
    (
        "POST",
        "/v1/runs",
        {"content": b'{"agent":"echo","input":"\\ud800"}', "headers": JSON},
        400,
        "malformed_json",
    ),
    ("POST", "/v1/runs", {"json": [1, 2]}, 422, "invalid_request"),
    ("POST", "/v1/runs", {"json": {"agent": 5}}, 422, "invalid_request"),
    ("POST", "/v1/runs", {"json": {}}, 422, "invalid_request"),
    (
        "POST",
        "/v1/runs",
        {"json": {"agent": "echo", "input": "x", "if_busy": "maybe"}},
        422,
        "invalid_request",
    ),
    (
        "POST",
        "/v1/runs",
        {"json": {"agent": "echo", "input": "x", "colour": "red"}},
        422,
        "invalid_request",
    ),
    (
        "POST",
        "/v1/runs",
        {"json": {"agent": "echo", "input": "x", "session_id": "ses_no"}},
        404,
        "not_found",
    ),
    ("POST", "/v1/runs", {"json": {"agent": "echo", "input": BIG}}, 413, "payload_too_large"),
    (
        "POST",
        "/v1/runs",
        {"json": {"agent": "echo"}, "headers": {"Idempotency-Key": "k" * 300}},
        422,
        "invalid_request",
    ),
    (
        "POST",
        "/v1/sessions/ses_no/runs",
        {"json": {"agent": "echo", "input": "x"}},
        404,
        "not_found",
    ),
    ("POST", "/v1/sessions", {"json": {"metadata": "x"}}, 422, "invalid_request"),
    ("POST", "/v1/sessions", {"json": {"metadata": {"big": BIG}}}, 413, "payload_too_large"),
    (
        "POST",
        "/v1/sessions",
        {"content": b'{"metadata":', "headers": {"Content-Type": "text/plain"}},
        400,
        "malformed_json",
    ),
    ("POST", "/v1/sessions", {"json": {"parent_id": "ses_no"}}, 404, "not_found"),
    ("GET", "/v1/nope", {}, 404, "not_found"),
    ("DELETE", "/v1/runs", {}, 405, "method_not_allowed"),
    ("GET", "/v1/runs/run_no", {}, 404, "not_found"),
    ("POST", "/v1/runs/run_no/wait", {}, 404, "not_found"),
    ("POST", "/v1/runs/run_no/cancel", {}, 404, "not_found"),
    ("POST", "/v1/runs/run_no/wait", {"params": {"timeout": -1}}, 422, "invalid_request"),
    ("POST", "/v1/runs/run_no/wait", {"params": {"timeout": "soon"}}, 422, "invalid_request"),
    ("POST", "/v1/runs/run_no/cancel", {"json": {"reason": 5}}, 422, "invalid_request"),
    ("GET", "/v1/sessions", {"params": {"limit": 5000}}, 422, "invalid_request"),
    ("GET", "/v1/runs/run_no/events", {"params": {"format": "xml"}}, 422, "invalid_request"),
]


async def _newest(client: httpx.AsyncClient) -> tuple[Any, Any]:
    sessions = (await client.get("/v1/sessions", params={"limit": 1})).json()["data"]
    runs = (await client.get("/v1/runs", params={"limit": 1})).json()["data"]
    return sessions, runs


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    BAD_REQUESTS,
    ids=[f"{m} {p} {s} {c}" for m, p, _, s, c in BAD_REQUESTS],
)
async def test_bad_request(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    """The status and code are the documented ones, and nothing new is stored."""
    before = await _newest(client)
    assert_error(await client.request(method, path, **kwargs), status, code)
    assert await _newest(client) == before


async def test_oversized_body_without_length(client: httpx.AsyncClient) -> None:
    """A chunked body that grows past the limit is refused as it streams in."""

    async def body() -> AsyncIterator[bytes]:
        yield b'{"agent": "echo", "input": "'
        for _ in range(20):
            yield b"x" * 5_000
        yield b'"}'

    before = await _newest(client)
    response = await client.post("/v1/runs", content=body(), headers=JSON)
    assert_error(response, 413, "payload_too_large")
    assert await _newest(client) == before


async def test_validation_message_is_readable(client: httpx.AsyncClient) -> None:
    """Validation errors say where and what, in one sentence and as details."""
    response = await client.post("/v1/runs", json={"agent": "echo", "if_busy": "maybe"})
    error = assert_error(response, 422, "invalid_request")
    assert error["message"].startswith("body.if_busy: Input should be 'reject'")
    assert error["details"][0]["loc"] == ["body", "if_busy"]


async def test_odd_metadata_filters(client: httpx.AsyncClient) -> None:
    """Metadata keys with quotes or dots are compared, not parsed."""
    for key in ('a"b', "a'b", "a.b", "$", "[0]"):
        response = await client.get("/v1/sessions", params={f"metadata.{key}": "1"})
        assert response.status_code == 200, (key, response.text)


async def test_json_whatever_the_content_type(client: httpx.AsyncClient) -> None:
    """``curl -d`` sends a form content type; the body is read as JSON all the same."""
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"Content-Type": content_type} if content_type else {}
        body = b'{"agent": "echo", "input": "hi"}'
        response = await client.post("/v1/runs", content=body, headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["input"] == "hi"
