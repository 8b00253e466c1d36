"""Every JSON page is bounded in bytes as well as in items: it stops early at
``max_page_bytes`` (16 KiB on the edge server), never with fewer than one item, and says
where to continue; reading on from there gives every item exactly once."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from culm.api.sse import _pieces
from culm.events import Event
from tests.api.helpers import finished

BUDGET = 16_384
ENVELOPE = 200
"""Room for a page's own fields around its items."""


async def _bulky(client: httpx.AsyncClient, n: int, size: int, **body: Any) -> Any:
    response = await client.post(
        "/v1/runs", json={"agent": "bulky", "input": {"n": n, "size": size}, **body}
    )
    assert response.status_code == 201, response.text
    return await finished(client, response.json()["id"])


async def _event_pages(client: httpx.AsyncClient, url: str, key: str) -> list[list[Any]]:
    """Every page of a stream of events from its start: until ``done`` for a run, until an
    empty page for a session (whose stream never says it is done)."""
    pages: list[list[Any]] = []
    after = 0
    while len(pages) < 100:
        response = await client.get(url, params={"format": "json", "after": after})
        assert response.status_code == 200
        page = response.json()
        assert len(response.content) <= BUDGET + ENVELOPE or len(page["data"]) == 1
        if not page["data"]:
            assert key == "pos", page  # a run's pages end with done, never empty
            return pages
        pages.append(page["data"])
        assert page["next_after"] == page["data"][-1][key]
        after = page["next_after"]
        if page["done"]:
            return pages
    raise AssertionError("more than 100 pages")


class TestEventPages:
    """Runs of large events are read in many small pages instead of one huge one."""

    async def test_a_run_of_2_kb_events(self, edge: httpx.AsyncClient) -> None:
        run = await _bulky(edge, 30, 2_000)
        pages = await _event_pages(edge, f"/v1/runs/{run['id']}/events", "seq")
        assert len(pages) > 3
        seqs = [event["seq"] for page in pages for event in page]
        assert seqs == list(range(1, run["last_seq"] + 1))
        assert pages[-1][-1]["type"] == "run.completed"

    async def test_an_event_larger_than_the_budget_comes_alone(
        self, edge: httpx.AsyncClient
    ) -> None:
        run = await _bulky(edge, 2, 20_000)  # queued, started, two bulk events, completed
        url = f"/v1/runs/{run['id']}/events"
        page = (await edge.get(url, params={"format": "json", "after": 2})).json()
        assert [e["seq"] for e in page["data"]] == [3]
        assert (page["next_after"], page["done"]) == (3, False)
        rest = await _event_pages(edge, url, "seq")
        assert [e["seq"] for p in rest for e in p] == [1, 2, 3, 4, 5]

    async def test_a_session_of_2_kb_events(self, edge: httpx.AsyncClient) -> None:
        run = await _bulky(edge, 30, 2_000)
        url = f"/v1/sessions/{run['session_id']}/events"
        pages = await _event_pages(edge, url, "pos")
        events = [event for page in pages for event in page]
        assert len(pages) > 3
        assert [e["seq"] for e in events] == list(range(1, run["last_seq"] + 1))
        assert [e["pos"] for e in events] == sorted({e["pos"] for e in events})


async def _listing(client: httpx.AsyncClient, url: str, **params: Any) -> list[list[Any]]:
    pages: list[list[Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 1000} | ({"cursor": cursor} if cursor else {})
        response = await client.get(url, params=query)
        assert response.status_code == 200, response.text
        assert len(response.content) <= BUDGET + ENVELOPE or len(response.json()["data"]) == 1
        page = response.json()
        pages.append(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert cursor == page["data"][-1]["id"]


class TestListings:
    """Runs, sessions and schedules carrying large inputs or metadata page by bytes too."""

    async def test_runs(self, edge: httpx.AsyncClient) -> None:
        session = (await edge.post("/v1/sessions")).json()["id"]
        ids = []
        for i in range(12):
            body = {"agent": "echo", "input": f"{i}" * 3_000, "if_busy": "enqueue"}
            response = await edge.post(f"/v1/sessions/{session}/runs", json=body)
            ids.append(response.json()["id"])
        for run_id in ids:
            await finished(edge, run_id)
        pages = await _listing(edge, "/v1/runs", session_id=session)
        assert len(pages) > 2
        assert [run["id"] for page in pages for run in page] == ids[::-1]

    async def test_sessions(self, edge: httpx.AsyncClient) -> None:
        tag = uuid.uuid4().hex
        ids = []
        for i in range(12):
            body = {"metadata": {"tag": tag, "notes": f"{i}" * 3_000}}
            ids.append((await edge.post("/v1/sessions", json=body)).json()["id"])
        pages = await _listing(edge, "/v1/sessions", **{"metadata.tag": tag})
        assert len(pages) > 2
        assert [session["id"] for page in pages for session in page] == ids[::-1]

    async def test_schedules(self, edge: httpx.AsyncClient) -> None:
        ids = []
        for i in range(12):
            body = {
                "agent": "echo",
                "every": 3600,
                "start_at": "2100-01-01T00:00:00Z",
                "input": f"{i}" * 3_000,
            }
            response = await edge.post("/v1/schedules", json=body)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        pages = await _listing(edge, "/v1/schedules")
        listed = [schedule["id"] for page in pages for schedule in page]
        assert len(pages) > 2
        assert [i for i in listed if i in ids] == ids[::-1]
        assert len(listed) == len(set(listed))


class TestStreamChunks:
    """An SSE catch-up batch is written in chunks of at most the page budget (or one event),
    in order, none empty."""

    def test_pieces(self) -> None:
        sizes = [10, 5_000, 5_000, 100, 20_000, 1, 1, 9_000, 9_000]
        batch = [
            Event(seq=i + 1, run_id="run_x", session_id="ses_x", type="t", data={"x": "y" * n})
            for i, n in enumerate(sizes)
        ]
        pieces = list(_pieces(batch, 12_000))
        assert [e for piece in pieces for e in piece] == batch
        for piece in pieces:
            assert piece
            assert len(piece) == 1 or sum(len(e.to_json()) for e in piece) <= 12_000
        assert [len(p) for p in pieces] == [4, 1, 3, 1]
        assert list(_pieces(batch[:2], 12_000)) == [batch[:2]]
