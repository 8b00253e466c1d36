"""Sessions over HTTP: create, get, list by metadata and cursor, delete, messages."""

from __future__ import annotations

import uuid

import httpx

from tests.api.helpers import assert_error, finished, start


class TestSessions:
    """The life of a session, and the refusals that keep it consistent."""

    async def test_create_get_list_delete(self, client: httpx.AsyncClient) -> None:
        tag = uuid.uuid4().hex
        created = []
        for i in range(5):
            body = {"metadata": {"tag": tag, "i": i}}
            response = await client.post("/v1/sessions", json=body)
            assert response.status_code == 201
            created.append(response.json())
        assert created[0]["metadata"] == {"tag": tag, "i": 0}
        assert created[0]["tenant"] == "default"
        got = await client.get(f"/v1/sessions/{created[0]['id']}")
        assert got.json() == created[0]
        seen: list[str] = []
        params: dict[str, str | int] = {"metadata.tag": tag, "limit": 2}
        while True:
            page = (await client.get("/v1/sessions", params=params)).json()
            seen += [s["id"] for s in page["data"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert seen == [s["id"] for s in reversed(created)]
        only = await client.get("/v1/sessions", params={"metadata.tag": tag, "metadata.i": "3"})
        assert [s["id"] for s in only.json()["data"]] == [created[3]["id"]]
        deleted = await client.delete(f"/v1/sessions/{created[0]['id']}")
        assert (deleted.status_code, deleted.content) == (204, b"")
        assert_error(await client.get(f"/v1/sessions/{created[0]['id']}"), 404, "not_found")
        assert_error(await client.delete(f"/v1/sessions/{created[0]['id']}"), 404, "not_found")

    async def test_child_session(self, client: httpx.AsyncClient) -> None:
        parent = (await client.post("/v1/sessions")).json()
        child = await client.post("/v1/sessions", json={"parent_id": parent["id"]})
        assert child.status_code == 201
        assert child.json()["parent_id"] == parent["id"]
        orphan = await client.post("/v1/sessions", json={"parent_id": "ses_missing"})
        assert_error(orphan, 404, "not_found")

    async def test_delete_refused_while_a_run_is_active(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "waiter")
        url = f"/v1/sessions/{run['session_id']}"
        error = assert_error(await client.delete(url), 409, "conflict")
        assert run["id"] in error["message"]
        await client.post(f"/v1/runs/{run['id']}/cancel")
        await finished(client, run["id"])
        assert (await client.delete(url)).status_code == 204
        assert_error(await client.get(f"/v1/runs/{run['id']}"), 404, "not_found")

    async def test_messages(self, client: httpx.AsyncClient) -> None:
        session = (await client.post("/v1/sessions")).json()
        response = await client.get(f"/v1/sessions/{session['id']}/messages")
        assert response.json() == {"data": [], "next_after": None}
        assert_error(await client.get("/v1/sessions/ses_nope/messages"), 404, "not_found")
        bad = await client.get(f"/v1/sessions/{session['id']}/messages", params={"after": -1})
        assert_error(bad, 422, "invalid_request")
