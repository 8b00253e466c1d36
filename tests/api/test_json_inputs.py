"""Random JSON thrown at every HTTP input that stores a client's JSON: a run's input, a
session's metadata, a schedule's input. Nesting of any depth, strings of any size, odd
characters (lone surrogates, NUL, astral planes), integers past 64 bits, NaN and infinities.

Each answer is 2xx or a 4xx JSON error, never a 500; a value culm can store is accepted and
reads back equal (a run's output too); one it cannot is refused (400 when it is not JSON at
all, 422 when it is JSON culm will not store, 413 when the body is too large). Meanwhile a
bystander run keeps waiting and still answers its cancel.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from culm.payload import InvalidPayload, Limits, check
from tests.api.conftest import BASE_ENV, Server

LIMITS = Limits(max_depth=64, max_bytes=1_048_576)  # the server's defaults
MAX_REQUEST = int(BASE_ENV["CULM_MAX_REQUEST_BYTES"])

text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20) | st.sampled_from(
    ["", "\x00", "a\x00b", "\ud800", "\udfff x", "😀", "\u2028", '"\\', "x" * 70_000]
)
integers = st.integers(-(2**63), 2**63 - 1) | st.integers(-(2**80), 2**80)
numbers = integers | st.floats(allow_nan=True, allow_infinity=True)
leaves = st.none() | st.booleans() | numbers | text


def _nest(value: Any, depth: int, as_dict: bool) -> Any:
    for _ in range(depth):
        value = {"k": value} if as_dict else [value]
    return value


shallow = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
deep = st.builds(_nest, shallow, st.integers(1, 400), st.booleans())
values = shallow | deep
objects = st.dictionaries(text, values, max_size=4)

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _storable(body: dict[str, Any]) -> bool:
    try:
        check(body, LIMITS)
    except InvalidPayload:
        return False
    return True


def _encode(body: dict[str, Any], ascii_only: bool) -> bytes:
    # json.dumps writes NaN and Infinity, and lone surrogates either as \ud800 escapes or,
    # unescaped, as bytes that are not UTF-8: each a different way of not being JSON
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def http(edge_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=edge_server.url, timeout=30) as client:
        bystander = client.post("/v1/runs", json={"agent": "waiter"}).json()
        yield client
        # the bystander went on waiting through it all, and still answers
        assert client.get(f"/v1/runs/{bystander['id']}").json()["status"] == "running"
        assert client.post(f"/v1/runs/{bystander['id']}/cancel").status_code == 202
        ended = client.post(f"/v1/runs/{bystander['id']}/wait", params={"timeout": 20})
        assert ended.json()["status"] == "cancelled"


def _send(http: httpx.Client, path: str, body: dict[str, Any], ascii_only: bool) -> Any:
    """POST the body; returns the created resource, or None after checking the refusal."""
    raw = _encode(body, ascii_only)
    response = http.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text
    if len(raw) > MAX_REQUEST:
        assert response.status_code == 413, response.text
    elif _storable(body):
        assert response.status_code == 201, response.text
        return response.json()
    else:
        assert response.status_code in (400, 422), response.text
    error = response.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return None


@SETTINGS
@given(value=values, ascii_only=st.booleans())
def test_run_input(http: httpx.Client, value: Any, ascii_only: bool) -> None:
    run = _send(http, "/v1/runs", {"agent": "echo", "input": value}, ascii_only)
    if run is None:
        return
    assert run["input"] == value
    ended = http.post(f"/v1/runs/{run['id']}/wait", params={"timeout": 20}).json()
    assert ended["status"] == "completed", ended
    assert ended["output"] == value
    assert http.get(f"/v1/runs/{run['id']}").json()["input"] == value


@SETTINGS
@given(metadata=objects, ascii_only=st.booleans())
def test_session_metadata(http: httpx.Client, metadata: dict[str, Any], ascii_only: bool) -> None:
    session = _send(http, "/v1/sessions", {"metadata": metadata}, ascii_only)
    if session is None:
        return
    assert session["metadata"] == metadata
    assert http.get(f"/v1/sessions/{session['id']}").json()["metadata"] == metadata


@SETTINGS
@given(value=values, ascii_only=st.booleans())
def test_schedule_input(http: httpx.Client, value: Any, ascii_only: bool) -> None:
    body = {
        "agent": "echo",
        "every": 3600,
        "start_at": "2100-01-01T00:00:00Z",
        "input": value,
    }
    schedule = _send(http, "/v1/schedules", body, ascii_only)
    if schedule is None:
        return
    assert schedule["input"] == value
    assert http.get(f"/v1/schedules/{schedule['id']}").json()["input"] == value
    assert http.delete(f"/v1/schedules/{schedule['id']}").status_code == 204
