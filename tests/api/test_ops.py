"""What operators and tools read: agents, health, metrics, the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.api.conftest import start_server
from tests.api.helpers import finished, start
from tests.api.sse import events


class TestOps:
    """The server describes itself and reports its state."""

    async def test_agents(self, client: httpx.AsyncClient) -> None:
        agents = (await client.get("/v1/agents")).json()["data"]
        by_name = {a["name"]: a for a in agents}
        assert by_name["count"] == {
            "name": "count",
            "description": "Emits ``input`` ticks as fast as it can, then returns how many.",
            "input_schema": {"type": "integer"},
        }
        assert [a["name"] for a in agents] == sorted(by_name)

    async def test_healthz(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")
        body = {"status": "ok", "database": "ok", "bus": "ok"}
        assert (response.status_code, response.json()) == (200, body)

    async def test_metrics(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "count", 10)
        await events(client, f"/v1/runs/{run['id']}/events")
        await finished(client, run["id"])
        response = await client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        samples = dict(
            (m.group(1), float(m.group(2)))
            for m in re.finditer(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.MULTILINE)
        )
        assert samples['culm_runs{status="completed"}'] >= 1
        assert samples["culm_events_appended_total"] >= 12
        assert samples["culm_queue_depth"] == samples['culm_runs{status="pending"}']
        assert "culm_live_subscribers" in samples
        assert "culm_sse_streams" in samples
        assert (
            samples['culm_event_delivery_seconds_bucket{le="+Inf"}']
            == samples["culm_event_delivery_seconds_count"]
        )
        for family in ("culm_runs", "culm_event_delivery_seconds"):
            assert f"# TYPE {family} " in text

    async def test_openapi(self, client: httpx.AsyncClient) -> None:
        schema = (await client.get("/openapi.json")).json()
        paths = schema["paths"]
        for path in (
            "/v1/agents",
            "/v1/sessions",
            "/v1/sessions/{session_id}",
            "/v1/sessions/{session_id}/messages",
            "/v1/sessions/{session_id}/runs",
            "/v1/sessions/{session_id}/events",
            "/v1/runs",
            "/v1/runs/{run_id}",
            "/v1/runs/{run_id}/wait",
            "/v1/runs/{run_id}/cancel",
            "/v1/runs/{run_id}/events",
            "/healthz",
            "/metrics",
        ):
            assert path in paths, path
        assert (await client.get("/docs")).status_code == 200


class TestEngineHealth:
    """/healthz asks the engine's ``health()`` where there is one: None or "" is healthy, a
    reason (or an object that is not ``ok``) is a 503 with that reason."""

    async def test_what_health_may_answer(self) -> None:
        from dataclasses import dataclass

        from culm.api.routes_ops import _engine_problem

        @dataclass
        class Report:
            ok: bool
            reason: str = ""

        class Plain:
            def __init__(self, answer: object) -> None:
                self.answer = answer

            def health(self) -> object:
                return self.answer

        class Async(Plain):
            async def health(self) -> object:  # type: ignore[override]
                return self.answer

        for kind in (Plain, Async):
            assert await _engine_problem(kind(None)) is None
            assert await _engine_problem(kind("")) is None
            assert await _engine_problem(kind("the disk is full")) == "the disk is full"
            assert await _engine_problem(kind(Report(ok=True))) is None
            assert await _engine_problem(kind(Report(False, "no space"))) == "no space"
        assert await _engine_problem(object()) is None  # an engine without health()


async def test_healthz_is_degraded_while_the_bus_is_down(tmp_path: Path) -> None:
    """A bus nobody answers on only delays other processes' news (the log is polled):
    the process still serves, and says so."""
    server = start_server(tmp_path, CULM_BUS_URL="redis://127.0.0.1:1/0")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            response = await client.get("/healthz")
            assert response.status_code == 200
            body = response.json()
            assert (body["status"], body["database"]) == ("degraded", "ok")
            assert body["bus"] not in ("ok", "", None)
            run = await start(client, "echo", "still works")
            assert (await finished(client, run["id"]))["status"] == "completed"
    finally:
        server.stop()
