"""``serve`` refuses to expose an unauthenticated API beyond loopback."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

import culm
from culm.api.server import check_bind, is_loopback, serve
from tests.agents import app
from tests.api.conftest import start_server
from tests.api.helpers import start
from tests.api.sse import messages


class TestBind:
    """Without keys only loopback; with keys anywhere."""

    @pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
    def test_loopback(self, host: str) -> None:
        assert is_loopback(host)
        check_bind(host, culm.Settings())

    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
    def test_elsewhere_needs_keys(self, host: str) -> None:
        assert not is_loopback(host)
        with pytest.raises(culm.InvalidInput, match="no API keys are configured"):
            check_bind(host, culm.Settings())
        check_bind(host, culm.Settings(api_keys={"k": "t"}))

    def test_serve_refuses_before_listening(self) -> None:
        with pytest.raises(culm.InvalidInput, match=r"refusing to listen on 0\.0\.0\.0"):
            serve(app, culm.Settings(database_url="sqlite:///:memory:"), host="0.0.0.0", port=9)

    def test_keys_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CULM_API_KEYS", "k1=alpha, k2=beta,")
        assert culm.Settings().api_keys == {"k1": "alpha", "k2": "beta"}
        monkeypatch.setenv("CULM_API_KEYS", "k1")
        with pytest.raises(ValueError, match="key=tenant"):
            culm.Settings()


class TestShutdown:
    """Stopping the server ends open streams cleanly and interrupts what still runs."""

    async def test_sigterm_with_an_open_stream(self, tmp_path: Path) -> None:
        server = start_server(tmp_path)
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                run = await start(client, "waiter")
                seen: list[str] = []
                async with asyncio.timeout(20):
                    url = f"/v1/runs/{run['id']}/events"
                    async with client.stream("GET", url) as response:
                        async for message in messages(response):
                            if message.event is not None:
                                seen.append(message.event)
                            if message.event == "run.started":
                                began = time.monotonic()
                                server.process.terminate()
                    ended = time.monotonic() - began  # the stream ended without an error
                    await asyncio.to_thread(server.process.wait, 20)
        finally:
            server.stop()
        assert seen == ["run.queued", "run.started"]
        assert ended < 2  # not held for the graceful-shutdown period
        with sqlite3.connect(tmp_path / "culm.db") as db:
            rows = db.execute("SELECT status, error FROM runs WHERE id = ?", (run["id"],))
            assert rows.fetchall() == [("interrupted", "the server shut down")]
        assert "Traceback" not in server.log.read_text()
