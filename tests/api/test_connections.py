"""What one client can make the server hold, and for how long: request heads, silent and
slow connections, unread responses, the number of open connections, the open-file limit."""

from __future__ import annotations

import re
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.api.conftest import EDGE_ENV, Server, start_server
from tests.api.raw import connect, read_until_closed, responses

HEAD = b"GET /healthz HTTP/1.1\r\nHost: culm\r\n"
SESSION_POST = b"POST /v1/sessions HTTP/1.1\r\nHost: culm\r\nContent-Length: 100\r\n\r\n{"
"""A request whose body says 100 bytes and brings one."""


def _error(raw: bytes, status: int, code: str) -> dict[str, str]:
    """The one response in ``raw`` is the JSON error with this status and code."""
    [(got, headers, body)] = responses(raw)
    assert got == status, raw[:300]
    assert headers["content-type"] == "application/json"
    error: dict[str, str] = orjson.loads(body)["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


class _Prober:
    """Asks ``/healthz`` back to back from a thread and records how long each answer took:
    a blocked event loop shows as one long answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                began = time.monotonic()
                assert http.get("/healthz").status_code == 200
                self.times.append(time.monotonic() - began)

    def __enter__(self) -> _Prober:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.times and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        started = len(self.times)
        deadline = time.monotonic() + 5
        while len(self.times) < started + 3 and time.monotonic() < deadline:
            time.sleep(0.01)  # a few answers after the attack, to catch a late stall
        self._stop.set()
        self._thread.join(10)


class TestRequestHeads:
    """A head is read up to ``max_header_bytes`` and within ``header_timeout_seconds``."""

    def test_a_50_mb_header_is_refused_without_blocking_anyone(self, edge_server: Server) -> None:
        sock = connect(edge_server.url)
        with _Prober(edge_server.url) as prober, sock:
            sock.sendall(HEAD + b"X-Big: ")
            chunk = b"a" * 1_048_576
            try:
                for _ in range(50):
                    sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may close once it has answered: the test is what it said
            raw, _ = read_until_closed(sock)
        _error(raw, 431, "headers_too_large")
        # before the limit, one such header stalled every other request for over 10 s
        assert max(prober.times) < 2.5, sorted(prober.times)[-5:]

    def test_a_long_request_target_is_refused(self, edge_server: Server) -> None:
        with connect(edge_server.url) as sock:
            sock.sendall(b"GET /healthz?" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: culm\r\n\r\n")
            raw, _ = read_until_closed(sock)
        _error(raw, 414, "uri_too_long")

    def test_a_silent_connection_is_closed(self, edge_server: Server) -> None:
        with connect(edge_server.url) as sock:
            raw, took = read_until_closed(sock)
        assert raw == b""  # nothing was asked, so nothing is answered
        assert 0.5 < took < 5

    def test_a_slow_head_is_answered_408(self, edge_server: Server) -> None:
        with connect(edge_server.url) as sock:
            sock.sendall(HEAD)  # and never the blank line that ends it
            raw, took = read_until_closed(sock)
        _error(raw, 408, "request_timeout")
        assert took < 5

    def test_an_idle_keep_alive_connection_is_closed(self, edge_server: Server) -> None:
        with connect(edge_server.url) as sock:
            sock.sendall(HEAD + b"\r\n")
            raw, took = read_until_closed(sock)
        [(status, _, body)] = responses(raw)
        assert status == 200 and orjson.loads(body)["status"] == "ok"
        assert took < 5


class TestRequestBodies:
    """A body must arrive within ``body_timeout_seconds`` of its head, however it trickles."""

    def test_a_stalled_body_is_answered_408(self, edge_server: Server) -> None:
        with connect(edge_server.url) as sock:
            sock.sendall(SESSION_POST)
            raw, took = read_until_closed(sock)
        _error(raw, 408, "request_timeout")
        assert took < 5

    def test_a_trickling_body_is_answered_408(self, edge_server: Server) -> None:
        received = b""
        with connect(edge_server.url) as sock:
            sock.sendall(SESSION_POST)
            sock.settimeout(0.2)
            began = time.monotonic()
            while time.monotonic() - began < 10:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    try:
                        sock.sendall(b" ")  # a byte every 0.2 s: never idle, never done
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    continue
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                received += chunk
        _error(received, 408, "request_timeout")
        assert time.monotonic() - began < 5


def _streams(http: httpx.Client) -> int:
    text = http.get("/metrics").text
    match = re.search(r"^culm_sse_streams ([0-9.e+]+)$", text, re.MULTILINE)
    assert match is not None, text
    return int(float(match.group(1)))


class TestResponses:
    """A client that reads nothing is cut after ``send_timeout_seconds``."""

    def test_an_unread_stream_is_cut(self, edge_server: Server) -> None:
        with httpx.Client(base_url=edge_server.url, timeout=30) as http:
            session = http.post("/v1/sessions").json()["id"]
            run = http.post(
                f"/v1/sessions/{session}/runs",
                json={"agent": "bulky", "input": {"n": 400, "size": 20_000}},
            ).json()
            assert http.post(f"/v1/runs/{run['id']}/wait").json()["status"] == "completed"
            with connect(edge_server.url) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                # a session's stream does not end by itself: only the cut can end this one
                url = f"/v1/sessions/{session}/events"
                sock.sendall(f"GET {url} HTTP/1.1\r\nHost: culm\r\n\r\n".encode())
                seen_open = False
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    open_streams = _streams(http)
                    seen_open = seen_open or open_streams > 0
                    if seen_open and open_streams == 0:
                        break
                    time.sleep(0.05)
                assert seen_open and open_streams == 0, "the unread stream is still open"
                # (the kernel still holds what was written before the cut: not read here)


@pytest.fixture(scope="module")
def crowded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that keeps at most 6 connections, started with a low open-file limit."""
    soft, hard = 256, 300
    running = start_server(
        tmp_path_factory.mktemp("crowded"),
        open_files=(soft, hard),
        **{**EDGE_ENV, "CULM_MAX_CONNECTIONS": "6", "CULM_HEADER_TIMEOUT_SECONDS": "30"},
    )
    yield running
    running.stop()


def _soft_file_limit(pid: int) -> int:
    limits = Path(f"/proc/{pid}/limits").read_text()
    match = re.search(r"^Max open files\s+(\d+)\s+(\d+)", limits, re.MULTILINE)
    assert match is not None, limits
    return int(match.group(1))


class TestCapacity:
    """The server raises its own open-file limit, and past ``max_connections`` answers 503
    at once (and says so in its log) instead of failing everyone silently."""

    def test_open_file_limit_is_raised(self, crowded_server: Server) -> None:
        assert _soft_file_limit(crowded_server.process.pid) == 300  # from 256 to the hard limit
        # 300 files cannot hold CULM_MAX_CONNECTIONS=6 and what the process needs besides?
        # they can: the limit stays 6 (a larger setting would be lowered, and logged)
        assert "serving at most" not in crowded_server.log.read_text()

    def test_connections_past_the_limit_get_503(self, crowded_server: Server) -> None:
        silent = [connect(crowded_server.url) for _ in range(6)]
        try:
            with httpx.Client(base_url=crowded_server.url, timeout=10) as http:
                response = http.get("/healthz")
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "unavailable"
            assert "limit of 6 open connections" in response.json()["error"]["message"]
        finally:
            for sock in silent:
                sock.close()
        log = crowded_server.log.read_text()
        assert "refused 1 connection(s) with 503" in log
        deadline = time.monotonic() + 10
        while True:  # the silent ones are gone: served again
            with httpx.Client(base_url=crowded_server.url, timeout=10) as http:
                if http.get("/healthz").status_code == 200:
                    break
            assert time.monotonic() < deadline, "still refused after the others left"
            time.sleep(0.05)


def test_silent_connections_past_the_default_file_limit(tmp_path: Path) -> None:
    """1,100 silent connections once took every descriptor of a server started with the
    usual limit of 1,024 open files, and every new request failed. The server now raises
    its own limit, so it still serves; and it closes the silent ones after their deadline."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    silent = min(1_100, hard - 300)  # this process holds them too
    running = start_server(tmp_path, open_files=(silent - 76, hard), **EDGE_ENV)
    sockets = []
    try:
        sockets = [connect(running.url) for _ in range(silent)]
        with httpx.Client(base_url=running.url, timeout=10) as http:
            assert http.get("/healthz").status_code == 200
        raw, _ = read_until_closed(sockets[0])  # the header deadline closes them
        assert raw == b""
    finally:
        for sock in sockets:
            sock.close()
        running.stop()


def test_too_many_connections_for_the_open_file_limit(tmp_path: Path) -> None:
    """A ``max_connections`` the open-file limit cannot hold is lowered, and logged."""
    running = start_server(
        tmp_path, open_files=(200, 200), **{**EDGE_ENV, "CULM_MAX_CONNECTIONS": "5000"}
    )
    try:
        assert "serving at most 72 connections, not 5000" in running.log.read_text()
    finally:
        running.stop()


class TestLargeBodies:
    """A body far over the limit gets its 413 read by the client, not a reset: the server
    discards the rest (for at most the body deadline), and the connection goes on."""

    def test_a_10_mb_body(self, edge_server: Server) -> None:
        with httpx.Client(base_url=edge_server.url, timeout=30) as http:
            response = http.post("/v1/runs", content=b"x" * 10_000_000)
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "payload_too_large"
            assert http.get("/healthz").status_code == 200

    def test_an_endless_body_is_cut_at_the_body_deadline(self, edge_server: Server) -> None:
        with connect(edge_server.url) as sock:
            sock.sendall(b"POST /v1/runs HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"10000\r\n" + b"x" * 65_536 + b"\r\n"
            began = time.monotonic()
            received = b""
            try:
                while time.monotonic() - began < 15:
                    sock.sendall(chunk)
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:
                        received += sock.recv(65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
            took = time.monotonic() - began
        assert received.startswith(b"HTTP/1.1 413"), received[:200]
        assert took < 10  # the body deadline (1 s here) and its grace, not the whole 15 s


class TestKeepAlive:
    """A connection stays usable after any refused request."""

    def test_errors_then_a_good_request_on_one_connection(self, edge_server: Server) -> None:
        requests = [
            b'POST /v1/sessions HTTP/1.1\r\nHost: c\r\nContent-Length: 8\r\n\r\n{"metada',
            b"GET /v1/nope HTTP/1.1\r\nHost: c\r\n\r\n",
            b"DELETE /v1/runs HTTP/1.1\r\nHost: c\r\n\r\n",
            b"GET /v1/sessions?metadata.a%00=1 HTTP/1.1\r\nHost: c\r\n\r\n",
            b"POST /v1/sessions HTTP/1.1\r\nHost: c\r\nContent-Length: 24\r\n\r\n"
            + b'{"metadata": 9223372036854775808}'[:24],
            b"POST /v1/runs HTTP/1.1\r\nHost: c\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70_000,
            b"GET /healthz HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n",
        ]
        with connect(edge_server.url) as sock:
            sock.sendall(b"".join(requests))
            raw, _ = read_until_closed(sock)
        got = [(status, orjson.loads(body)) for status, _, body in responses(raw)]
        assert [status for status, _ in got] == [400, 404, 405, 422, 400, 413, 200]
        codes = [body.get("error", {}).get("code") for _, body in got]
        assert codes[:-1] == [
            "malformed_json",
            "not_found",
            "method_not_allowed",
            "invalid_request",
            "malformed_json",
            "payload_too_large",
        ]
        assert got[-1][1]["status"] == "ok"
