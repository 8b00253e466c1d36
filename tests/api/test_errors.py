"""Bad input gets the right 4xx in the error shape, and never changes what is stored."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server
from tests.api.helpers import assert_error, eventually, finished, start
from tests.api.raw import connect

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


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


DEEP = [65, 255, 300, 1_000, 5_000]
"""Past ``max_json_depth`` (64), around the encoders' own limits (255, 1,024), far past."""


class TestHostileBodies:
    """What cannot be stored is refused at the door with 422 and changes nothing."""

    @pytest.mark.parametrize("depth", DEEP)
    @pytest.mark.parametrize(
        ("path", "template"),
        [
            ("/v1/sessions", b'{"metadata": {"a": %b}}'),
            ("/v1/runs", b'{"agent": "echo", "input": %b}'),
            ("/v1/schedules", b'{"agent": "echo", "every": 3600, "input": %b}'),
        ],
        ids=["session metadata", "run input", "schedule input"],
    )
    async def test_deep_nesting(
        self, client: httpx.AsyncClient, path: str, template: bytes, depth: int
    ) -> None:
        before = await _newest(client)
        schedules = (await client.get("/v1/schedules", params={"limit": 1})).json()
        response = await client.post(path, content=template % _nested(depth), headers=JSON)
        error = assert_error(response, 422, "invalid_payload")
        assert "levels deep" in error["message"]
        assert await _newest(client) == before
        assert (await client.get("/v1/schedules", params={"limit": 1})).json() == schedules

    @pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 2**70, 10**40])
    @pytest.mark.parametrize(
        ("path", "template"),
        [
            ("/v1/sessions", b'{"metadata": {"n": %d}}'),
            ("/v1/runs", b'{"agent": "echo", "input": [%d]}'),
        ],
        ids=["session metadata", "run input"],
    )
    async def test_integers_past_64_bits(
        self, client: httpx.AsyncClient, path: str, template: bytes, number: int
    ) -> None:
        """Refused by name, never turned into a float."""
        before = await _newest(client)
        response = await client.post(path, content=template % number, headers=JSON)
        error = assert_error(response, 422, "invalid_payload")
        assert "does not fit in 64 bits" in error["message"]
        assert await _newest(client) == before

    async def test_64_bit_integers_are_kept_exactly(self, client: httpx.AsyncClient) -> None:
        for number in (2**63 - 1, -(2**63), 2**53 + 1):
            body = b'{"metadata": {"n": %d}}' % number
            response = await client.post("/v1/sessions", content=body, headers=JSON)
            assert response.status_code == 201, response.text
            stored = await client.get(f"/v1/sessions/{response.json()['id']}")
            assert b'"n":%d' % number in stored.content

    @pytest.mark.parametrize(
        "params",
        [{"metadata.a\x00b": "1"}, {"metadata.a": "1\x00"}, {"agent": "\x00"}],
        ids=["filter key", "filter value", "run filter"],
    )
    async def test_nul_in_a_query(self, client: httpx.AsyncClient, params: dict[str, str]) -> None:
        path = "/v1/runs" if "agent" in params else "/v1/sessions"
        error = assert_error(await client.get(path, params=params), 422, "invalid_request")
        assert "NUL" in error["message"]

    async def test_nul_in_a_path(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.get("/v1/runs/run_%00x"), 422, "invalid_request")

    async def test_too_many_metadata_filters(self, client: httpx.AsyncClient) -> None:
        params = {f"metadata.k{i}": "v" for i in range(17)}
        assert_error(await client.get("/v1/sessions", params=params), 422, "invalid_request")

    @pytest.mark.parametrize("path", ["/v1/runs/run_x/wait", "/v1/runs", "/v1/sessions"])
    async def test_chunked_body_over_the_limit(self, client: httpx.AsyncClient, path: str) -> None:
        """2 MiB sent chunked (no Content-Length) to a route that reads no body, or does."""

        async def body() -> AsyncIterator[bytes]:
            for _ in range(32):
                yield b"x" * 65_536

        response = await client.post(path, content=body())
        assert_error(response, 413, "payload_too_large")
        assert (await client.get("/healthz")).status_code == 200  # and the client goes on

    async def test_method_not_allowed_lists_every_method(self, client: httpx.AsyncClient) -> None:
        for method, path, allowed in (
            ("DELETE", "/v1/runs", "GET, POST"),
            ("PUT", "/v1/sessions/ses_x", "DELETE, GET"),
            ("GET", "/v1/runs/run_x/cancel", "POST"),
            ("POST", "/v1/schedules/sch_x", "DELETE, GET, PATCH"),
        ):
            response = await client.request(method, path)
            error = assert_error(response, 405, "method_not_allowed")
            assert response.headers["allow"] == allowed
            assert allowed in error["message"]


def _subscribers(metrics: str) -> int:
    match = re.search(r"^culm_live_subscribers ([0-9.e+]+)$", metrics, re.MULTILINE)
    assert match is not None, metrics
    return int(float(match.group(1)))


async def test_hanging_up_during_wait_logs_nothing(
    server: Server, client: httpx.AsyncClient
) -> None:
    """The client leaves; the wait ends with it, quietly: no 500, no traceback."""
    log_before = len(server.log.read_bytes())
    run = await start(client, "waiter")
    baseline = _subscribers((await client.get("/metrics")).text)
    with connect(server.url) as sock:
        sock.sendall(
            f"POST /v1/runs/{run['id']}/wait?timeout=60 HTTP/1.1\r\nHost: c\r\n\r\n".encode()
        )

        async def waiting() -> bool:
            return _subscribers((await client.get("/metrics")).text) > baseline

        await eventually(waiting)
    # the socket is closed: the wait must notice and let go of its subscription

    async def gone() -> bool:
        return _subscribers((await client.get("/metrics")).text) <= baseline

    await eventually(gone)
    assert (await client.post(f"/v1/runs/{run['id']}/cancel")).status_code == 202
    await finished(client, run["id"])
    log = server.log.read_bytes()[log_before:].decode()
    assert "Traceback" not in log and "Exception" not in log, log
