"""API keys and tenants: a tenant sees only its own sessions, runs and events."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi.routing import APIRoute

import culm
from culm.api import create_app
from tests.agents import app as test_app
from tests.api.conftest import Server
from tests.api.helpers import assert_error, finished, start, until_event


@pytest.fixture
async def tenant_a(keyed_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": "Bearer key-a"}
    async with httpx.AsyncClient(base_url=keyed_server.url, headers=headers, timeout=30) as c:
        yield c


@pytest.fixture
async def tenant_b(keyed_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=keyed_server.url, headers={"X-API-Key": "key-b"}, timeout=30
    ) as c:
        yield c


OPEN_ROUTES = {"/healthz", "/", "/dashboard/{path:path}"}
"""The routes that answer without a key: the health check, and the dashboard's page and
files (static, the same for everyone: the page asks for a key before it reads anything)."""


class TestKeys:
    """Without a valid key every route but /healthz and the dashboard's static page and
    files answers 401."""

    async def test_missing_and_wrong_keys(self, keyed_server: Server) -> None:
        async with httpx.AsyncClient(base_url=keyed_server.url) as anonymous:
            for method, path in (
                ("GET", "/v1/agents"),
                ("GET", "/v1/runs"),
                ("POST", "/v1/runs"),
                ("GET", "/v1/sessions/ses_x"),
                ("GET", "/metrics"),
            ):
                response = await anonymous.request(method, path)
                assert_error(response, 401, "unauthenticated")
                assert response.headers["www-authenticate"] == "Bearer"
                for headers in ({"Authorization": "Bearer nope"}, {"X-API-Key": "key-"}):
                    wrong = await anonymous.request(method, path, headers=headers)
                    assert_error(wrong, 401, "unauthenticated")
            assert (await anonymous.get("/healthz")).status_code == 200

    async def test_every_route_needs_a_key(self, keyed_server: Server) -> None:
        """Walks every route the app has (so a route added later is covered too)."""
        api = create_app(test_app, culm.Settings(api_keys={"k": "t"}))
        routes: list[APIRoute] = api.state.routes  # every route, as the 405 handler sees them
        # nothing the API documents is missing from that list
        documented = {
            (path, method.upper())
            for path, operations in api.openapi()["paths"].items()
            for method in operations
        }
        assert documented <= {(r.path, m) for r in routes for m in r.methods}
        asked = 0
        async with httpx.AsyncClient(base_url=keyed_server.url) as anonymous:
            for route in routes:
                path = re.sub(r"\{[^}]+\}", "x", route.path)
                for method in sorted(route.methods or ()):
                    response = await anonymous.request(method, path)
                    asked += 1
                    if route.path in OPEN_ROUTES:
                        assert response.status_code in (200, 404), (method, path)
                    else:
                        assert response.status_code == 401, (method, path, response.text)
        assert asked > 40

    async def test_both_headers_and_two_keys_of_a_tenant(self, keyed_server: Server) -> None:
        async with httpx.AsyncClient(base_url=keyed_server.url) as http:
            created = await http.post("/v1/sessions", headers={"X-API-Key": "key-a"})
            assert created.json()["tenant"] == "tenant-a"
            url = f"/v1/sessions/{created.json()['id']}"
            same = await http.get(url, headers={"Authorization": "Bearer key-a2"})
            assert same.json() == created.json()


class TestIsolation:
    """Another tenant's ids answer 404 on every route; lists show only one's own."""

    async def test_every_route_with_anothers_ids(
        self, tenant_a: httpx.AsyncClient, tenant_b: httpx.AsyncClient
    ) -> None:
        session = (await tenant_a.post("/v1/sessions", json={"metadata": {"who": "a"}})).json()
        done = await start(tenant_a, "count", 3, session_id=session["id"])
        await finished(tenant_a, done["id"])
        live = await start(tenant_a, "waiter", session_id=session["id"], if_busy="enqueue")
        await until_event(tenant_a, live["id"], "run.started")
        sid, rid, lid = session["id"], done["id"], live["id"]
        for method, path, kwargs in (
            ("GET", f"/v1/sessions/{sid}", {}),
            ("DELETE", f"/v1/sessions/{sid}", {}),
            ("GET", f"/v1/sessions/{sid}/messages", {}),
            ("GET", f"/v1/sessions/{sid}/events", {}),
            ("GET", f"/v1/sessions/{sid}/events", {"params": {"format": "json"}}),
            ("POST", f"/v1/sessions/{sid}/runs", {"json": {"agent": "echo", "input": "x"}}),
            ("POST", "/v1/runs", {"json": {"agent": "echo", "input": "x", "session_id": sid}}),
            ("POST", "/v1/sessions", {"json": {"parent_id": sid}}),
            ("GET", f"/v1/runs/{rid}", {}),
            ("GET", f"/v1/runs/{rid}/events", {}),
            ("GET", f"/v1/runs/{rid}/events", {"params": {"format": "json"}}),
            ("POST", f"/v1/runs/{rid}/wait", {"params": {"timeout": 0}}),
            ("POST", f"/v1/runs/{lid}/cancel", {}),
            ("GET", f"/v1/runs/{rid}/children", {}),
            ("GET", f"/v1/runs/{rid}/tree", {}),
            ("POST", "/v1/runs", {"json": {"agent": "echo", "input": "x", "parent_run_id": lid}}),
        ):
            response = await tenant_b.request(method, path, **kwargs)
            assert_error(response, 404, "not_found")
        for params in ({}, {"session_id": sid}, {"agent": "waiter"}, {"status": "running"}):
            runs = (await tenant_b.get("/v1/runs", params=params)).json()["data"]
            assert {rid, lid}.isdisjoint(r["id"] for r in runs)
        sessions = (await tenant_b.get("/v1/sessions", params={"metadata.who": "a"})).json()
        assert sessions["data"] == []
        mine = (await tenant_a.get("/v1/sessions", params={"metadata.who": "a"})).json()["data"]
        assert sid in [s["id"] for s in mine]
        # the live run was not cancelled by the other tenant's attempt
        assert (await tenant_a.get(f"/v1/runs/{lid}")).json()["status"] == "running"
        assert (await tenant_a.post(f"/v1/runs/{lid}/cancel")).status_code == 202
        assert (await finished(tenant_a, lid))["error"] == "cancelled by http:tenant-a"

    async def test_idempotency_keys_are_per_tenant(
        self, tenant_a: httpx.AsyncClient, tenant_b: httpx.AsyncClient
    ) -> None:
        key = {"Idempotency-Key": "shared-key"}
        body = {"agent": "echo", "input": "x"}
        a = await tenant_a.post("/v1/runs", json=body, headers=key)
        b = await tenant_b.post("/v1/runs", json=body, headers=key)
        assert (a.status_code, b.status_code) == (201, 201)
        assert a.json()["id"] != b.json()["id"]
