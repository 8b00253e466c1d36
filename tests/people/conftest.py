"""The people-in-the-loop tests' server: ``culm serve`` of ``served_app`` on the fake OpenAI
server, with a file its tools record to and a gate file a tool waits for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.serving import Server
from tests.fake_openai import FakeOpenAI, openai_server

__all__ = ["env", "openai_server", "server"]

APP = "tests.people.served_app:app"
FAST = {"CULM_INPUT_POLL_SECONDS": "0.2"}
"""How often waits are checked for their timeout."""


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, openai_server: FakeOpenAI) -> None:
    monkeypatch.setenv("FAKE_OPENAI_URL", openai_server.base_url)
    monkeypatch.setenv("RECORD_FILE", str(tmp_path / "records.txt"))
    monkeypatch.setenv("GATE_FILE", str(tmp_path / "gate"))
    (tmp_path / "records.txt").touch()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "culm.db", APP, env=FAST).start()
    yield running
    running.stop()


def records(tmp_path: Path) -> list[str]:
    """What the app's tools and steps did, in order."""
    return (tmp_path / "records.txt").read_text().splitlines()
