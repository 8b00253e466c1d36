"""``/v1/schedules`` over real HTTP, against a server in its own process on real time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, start_server
from tests.api.helpers import assert_error, finished
from tests.schedule.conftest import eventually

KEYS = {"sk-one": "one", "sk-two": "two", "sk-three": "three"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    keys = ",".join(f"{key}={tenant}" for key, tenant in KEYS.items())
    running = start_server(tmp_path_factory.mktemp("schedules"), CULM_API_KEYS=keys)
    yield running
    running.stop()


def client_for(server: Server, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    )


@pytest.fixture
async def one(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(server, "sk-one") as http:
        yield http


@pytest.fixture
async def two(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(server, "sk-two") as http:
        yield http


async def create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/schedules", json={"agent": "echo", "input": "x", **body})
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()
    return schedule


class TestLifecycle:
    """Create, read, change, pause, resume, trigger, read the ledger, delete."""

    async def test_a_schedule_from_creation_to_deletion(self, one: httpx.AsyncClient) -> None:
        schedule = await create(
            one,
            cron="0 9 * * 1-5",
            timezone="Europe/Paris",
            name="weekday mornings",
            start_at="2030-01-01T00:00:00+01:00",
        )
        sid = schedule["id"]
        assert schedule["next_fire_at"] == "2030-01-01T08:00:00Z"  # 09:00 in Paris, Tuesday
        assert schedule["counts"]["started"] == 0
        assert (await one.get(f"/v1/schedules/{sid}")).json() == schedule
        assert [s["id"] for s in (await one.get("/v1/schedules")).json()["data"]] == [sid]

        changed = await one.patch(f"/v1/schedules/{sid}", json={"name": "renamed", "input": "y"})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["name"], changed.json()["input"]) == ("renamed", "y")
        assert changed.json()["next_fire_at"] == schedule["next_fire_at"]
        recadenced = await one.patch(f"/v1/schedules/{sid}", json={"every": 3600})
        assert (recadenced.json()["cron"], recadenced.json()["every"]) == (None, 3600.0)

        paused = await one.post(f"/v1/schedules/{sid}/pause")
        assert paused.status_code == 200 and paused.json()["paused"] is True

        fired = await one.post(f"/v1/schedules/{sid}/trigger")
        assert fired.status_code == 201, fired.text
        firing = fired.json()
        assert (firing["outcome"], firing["manual"]) == ("started", True)
        run = await finished(one, firing["run_id"])
        assert (run["trigger"], run["schedule_id"], run["output"]) == ("schedule", sid, "y")
        runs = (await one.get("/v1/runs", params={"schedule_id": sid})).json()["data"]
        assert [r["id"] for r in runs] == [run["id"]]

        resumed = await one.post(f"/v1/schedules/{sid}/resume")
        assert resumed.json()["paused"] is False
        ledger = (await one.get(f"/v1/schedules/{sid}/firings")).json()
        assert [f["id"] for f in ledger["data"]] == [firing["id"]]
        assert ledger["next_cursor"] is None

        assert (await one.delete(f"/v1/schedules/{sid}")).status_code == 204
        assert_error(await one.get(f"/v1/schedules/{sid}"), 404, "not_found")
        assert_error(await one.get(f"/v1/schedules/{sid}/firings"), 404, "not_found")
        assert (await one.get(f"/v1/runs/{run['id']}")).status_code == 200

    async def test_the_clock_fires_it(self, one: httpx.AsyncClient) -> None:
        at = datetime.fromtimestamp(time.time() + 1.0, UTC).isoformat()
        schedule = await create(one, at=at, input="on time")
        ledger: list[dict[str, Any]] = []

        async def fired() -> bool:
            nonlocal ledger
            ledger = (await one.get(f"/v1/schedules/{schedule['id']}/firings")).json()["data"]
            return bool(ledger) and ledger[0]["outcome"] == "started"

        await eventually(fired, timeout=20)
        run = await finished(one, ledger[0]["run_id"])
        assert run["output"] == "on time"
        after = (await one.get(f"/v1/schedules/{schedule['id']}")).json()
        assert (after["next_fire_at"], after["last_run_id"]) == (None, run["id"])

    async def test_pages(self, server: Server) -> None:
        async with client_for(server, "sk-three") as three:
            ids = [(await create(three, every=60))["id"] for _ in range(3)]
            first = (await three.get("/v1/schedules", params={"limit": 2})).json()
            rest = (
                await three.get(
                    "/v1/schedules", params={"limit": 2, "cursor": first["next_cursor"]}
                )
            ).json()
        assert [s["id"] for s in first["data"] + rest["data"]] == ids[::-1]
        assert rest["next_cursor"] is None


class TestRejected:
    """Bad input is a clear 4xx and stores nothing."""

    CASES = (
        ({"cron": "61 * * * *"}, 422, "invalid_input"),
        ({"cron": "0 9 * * *", "timezone": "Europe/Pariss"}, 422, "invalid_input"),
        (
            {"every": 60, "start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"},
            422,
            "invalid_input",
        ),
        ({"every": 60, "agent": "ghost"}, 404, "not_found"),
        ({"at": "2030-01-01T00:00:00"}, 422, "invalid_request"),  # no offset: ambiguous
        ({"every": 60, "colour": "red"}, 422, "invalid_request"),
        ({"every": 60, "overlap": "sometimes"}, 422, "invalid_request"),
        ({"every": 60, "cron": "* * * * *"}, 422, "invalid_input"),
    )

    @pytest.mark.parametrize(("body", "status", "code"), CASES)
    async def test_rejected(
        self, two: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
    ) -> None:
        response = await two.post("/v1/schedules", json={"agent": "echo", "input": "x", **body})
        assert_error(response, status, code)
        assert (await two.get("/v1/schedules")).json()["data"] == []

    async def test_a_bad_change_changes_nothing(self, two: httpx.AsyncClient) -> None:
        schedule = await create(two, every=60)
        sid = schedule["id"]
        assert_error(
            await two.patch(f"/v1/schedules/{sid}", json={"cron": "nope"}), 422, "invalid_input"
        )
        assert (await two.get(f"/v1/schedules/{sid}")).json() == schedule
        await two.delete(f"/v1/schedules/{sid}")


class TestTenants:
    """Another tenant's schedule answers 404 to everything."""

    async def test_scoping(self, one: httpx.AsyncClient, two: httpx.AsyncClient) -> None:
        sid = (await create(one, every=60))["id"]
        for method, path in [
            ("GET", ""),
            ("PATCH", ""),
            ("POST", "/pause"),
            ("POST", "/resume"),
            ("POST", "/trigger"),
            ("GET", "/firings"),
            ("DELETE", ""),
        ]:
            body = {"name": "mine now"} if method == "PATCH" else None
            response = await two.request(method, f"/v1/schedules/{sid}{path}", json=body)
            assert_error(response, 404, "not_found")
        assert sid not in [s["id"] for s in (await two.get("/v1/schedules")).json()["data"]]
        assert (await one.get(f"/v1/schedules/{sid}")).json()["name"] is None
        await one.delete(f"/v1/schedules/{sid}")

    async def test_a_key_is_required(self, server: Server) -> None:
        async with httpx.AsyncClient(base_url=server.url) as anonymous:
            assert_error(await anonymous.get("/v1/schedules"), 401, "unauthenticated")


def test_routes_are_in_the_openapi_document(server: Server, tmp_path: Path) -> None:
    # the document needs a key like every route but /healthz
    key = {"Authorization": "Bearer sk-one"}
    paths = httpx.get(f"{server.url}/openapi.json", headers=key).json()["paths"]
    assert {p for p in paths if p.startswith("/v1/schedules")} == {
        "/v1/schedules",
        "/v1/schedules/{schedule_id}",
        "/v1/schedules/{schedule_id}/pause",
        "/v1/schedules/{schedule_id}/resume",
        "/v1/schedules/{schedule_id}/trigger",
        "/v1/schedules/{schedule_id}/firings",
    }
