"""What needs a person is told to the systems around culm: ``run.waiting`` as a signed
webhook, with what the run asks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client.serving import Server
from tests.people.conftest import APP
from tests.webhooks.receiver import Receiver, receiving


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECORD_FILE", str(tmp_path / "records.txt"))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


@pytest.fixture
def server(tmp_path: Path) -> Any:
    # the receiver is on loopback
    hooks = {"CULM_WEBHOOK_ALLOW_PRIVATE": "true", "CULM_WEBHOOK_POLL_SECONDS": "0.1"}
    running = Server(tmp_path / "culm.db", APP, env=hooks).start()
    yield running
    running.stop()


async def test_run_waiting_is_delivered_signed(receiver: Receiver, server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
        endpoint = (
            await api.post(
                "/v1/webhooks", json={"url": receiver.url("people"), "events": ["run.waiting"]}
            )
        ).json()
        assert "secret" in endpoint, endpoint
        receiver.expect("people", endpoint["secret"])
        run = (await api.post("/v1/runs", json={"agent": "asker", "input": "o-5"})).json()
        [post] = await receiver.wait_for("people", 1)
        await api.post(f"/v1/runs/{run['id']}/cancel")
    assert post.verified
    body = post.json()
    assert body["type"] == "run.waiting" and body["run_id"] == run["id"]
    assert body["data"]["kind"] == "question" and body["data"]["question"] == "Which account?"
    assert body["data"]["call_id"] == "ask-1"
