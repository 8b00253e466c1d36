"""Starting, listing, waiting for and cancelling runs over HTTP."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.api.helpers import assert_error, eventually, finished, start, until_event


class TestStart:
    """A start returns the pending run at once; the run then executes in the background."""

    async def test_start_on_a_new_session(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "echo", "hello")
        assert run["trigger"] == "http"
        assert run["agent"] == "echo"
        assert run["input"] == "hello"
        assert run["status"] in ("pending", "running")
        session = await client.get(f"/v1/sessions/{run['session_id']}")
        assert session.status_code == 200
        done = await finished(client, run["id"])
        assert (done["status"], done["output"], done["error"]) == ("completed", "hello", None)
        assert (await client.get(f"/v1/runs/{run['id']}")).json() == done

    async def test_start_on_a_session(self, client: httpx.AsyncClient) -> None:
        session = (await client.post("/v1/sessions", json={"metadata": {"k": "v"}})).json()
        response = await client.post(
            f"/v1/sessions/{session['id']}/runs", json={"agent": "count", "input": 3}
        )
        assert response.status_code == 201
        assert response.json()["session_id"] == session["id"]
        also = await start(client, "echo", "x", session_id=session["id"], if_busy="enqueue")
        assert also["session_id"] == session["id"]
        assert (await finished(client, also["id"]))["output"] == "x"

    async def test_a_failing_agent(self, client: httpx.AsyncClient) -> None:
        run = await finished(client, (await start(client, "crash", "kaput"))["id"])
        assert run["status"] == "failed"
        assert "kaput" in run["error"]


class TestBusy:
    """``if_busy`` decides what a start does while the session has an active run."""

    async def test_reject_names_the_active_run(self, client: httpx.AsyncClient) -> None:
        first = await start(client, "waiter")
        url = f"/v1/sessions/{first['session_id']}/runs"
        for body in (
            {"agent": "echo", "input": "x"},
            {"agent": "echo", "input": "x", "if_busy": "reject"},
        ):
            error = assert_error(await client.post(url, json=body), 409, "session_busy")
            assert error["active_run_id"] == first["id"]
            assert first["id"] in error["message"]
        runs = (await client.get("/v1/runs", params={"session_id": first["session_id"]})).json()
        assert [r["id"] for r in runs["data"]] == [first["id"]]  # nothing stored
        await client.post(f"/v1/runs/{first['id']}/cancel")
        await finished(client, first["id"])

    async def test_enqueue_runs_after(self, client: httpx.AsyncClient) -> None:
        first = await start(client, "ticker", {"n": 3, "delay": 0.05})
        second = await start(
            client, "echo", "next", session_id=first["session_id"], if_busy="enqueue"
        )
        assert second["status"] == "pending"
        done = await finished(client, second["id"])
        assert done["status"] == "completed"
        first_done = await finished(client, first["id"])
        assert first_done["status"] == "completed"
        assert first_done["completed_at"] <= done["started_at"]

    async def test_interrupt_cancels_the_active_run(self, client: httpx.AsyncClient) -> None:
        first = await start(client, "waiter")
        await until_event(client, first["id"], "run.started")
        second = await start(
            client, "echo", "now", session_id=first["session_id"], if_busy="interrupt"
        )
        cancelled = await finished(client, first["id"])
        assert cancelled["status"] == "cancelled"
        assert second["id"] in cancelled["error"]
        assert (await finished(client, second["id"]))["output"] == "now"


class TestIdempotency:
    """A retried start with the same Idempotency-Key returns the same run, never a second."""

    async def test_retry_returns_the_same_run(self, client: httpx.AsyncClient) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        body = {"agent": "echo", "input": "once"}
        first = await client.post("/v1/runs", json=body, headers=key)
        again = await client.post("/v1/runs", json=body, headers=key)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        session = first.json()["session_id"]
        runs = (await client.get("/v1/runs", params={"session_id": session})).json()["data"]
        assert len(runs) == 1

    async def test_concurrent_retries_start_one_run(self, client: httpx.AsyncClient) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        body = {"agent": "echo", "input": "once"}
        responses = await asyncio.gather(
            *(client.post("/v1/runs", json=body, headers=key) for _ in range(10))
        )
        assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
        assert len({r.json()["id"] for r in responses}) == 1

    async def test_concurrent_retries_on_a_session_its_run_makes_busy(
        self, client: httpx.AsyncClient
    ) -> None:
        session = (await client.post("/v1/sessions", json={})).json()
        key = {"Idempotency-Key": uuid.uuid4().hex}
        url = f"/v1/sessions/{session['id']}/runs"
        # the first start makes the session busy: the retries must get its run, not 409
        responses = await asyncio.gather(
            *(client.post(url, json={"agent": "waiter"}, headers=key) for _ in range(10))
        )
        assert sorted(r.status_code for r in responses) == [200] * 9 + [201], [
            r.text for r in responses
        ]
        [run_id] = {r.json()["id"] for r in responses}
        # and a retry once it runs still names it
        again = await client.post(url, json={"agent": "waiter"}, headers=key)
        assert (again.status_code, again.json()["id"]) == (200, run_id)
        await client.post(f"/v1/runs/{run_id}/cancel")
        await finished(client, run_id)

    async def test_the_key_with_another_request(self, client: httpx.AsyncClient) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = await client.post("/v1/runs", json={"agent": "echo", "input": "a"}, headers=key)
        other = await client.post("/v1/runs", json={"agent": "count", "input": 1}, headers=key)
        error = assert_error(other, 409, "idempotency_key_reused")
        assert first.json()["id"] in error["message"]


class TestWaitAndCancel:
    """Wait returns at the end or at the timeout; cancel is idempotent and says who asked."""

    async def test_wait_times_out_with_the_live_run(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "waiter")
        await until_event(client, run["id"], "run.started")
        waited = await client.post(f"/v1/runs/{run['id']}/wait", params={"timeout": 0.2})
        assert waited.status_code == 200
        assert waited.json()["status"] == "running"
        first = await client.post(f"/v1/runs/{run['id']}/cancel", json={"reason": "test"})
        second = await client.post(f"/v1/runs/{run['id']}/cancel")
        assert (first.status_code, second.status_code) == (202, 202)
        done = await finished(client, run["id"])
        assert done["status"] == "cancelled"
        assert done["error"] == "cancelled by http:default: test"
        third = await client.post(f"/v1/runs/{run['id']}/cancel")
        assert third.status_code == 202
        assert third.json()["status"] == "cancelled"

    async def test_a_wait_ends_when_its_client_hangs_up(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "waiter")
        await until_event(client, run["id"], "run.started")
        before = await subscribers(client)
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"/v1/runs/{run['id']}/wait", params={"timeout": 60}, timeout=0.5)

        async def let_go() -> bool:
            return await subscribers(client) <= before

        await eventually(let_go)  # the server drops the wait and its subscription
        await client.post(f"/v1/runs/{run['id']}/cancel")
        await finished(client, run["id"])

    async def test_cancel_a_finished_run(self, client: httpx.AsyncClient) -> None:
        run = await finished(client, (await start(client, "echo", "x"))["id"])
        error = assert_error(await client.post(f"/v1/runs/{run['id']}/cancel"), 409, "run_finished")
        assert error["status"] == "completed"

    async def test_cancel_a_stubborn_run(self, client: httpx.AsyncClient) -> None:
        run = await start(client, "stubborn")
        await until_event(client, run["id"], "run.started")
        assert (await client.post(f"/v1/runs/{run['id']}/cancel")).status_code == 202
        done = await finished(client, run["id"])
        assert done["status"] == "cancelled"

    async def test_cancel_a_pending_run(self, client: httpx.AsyncClient) -> None:
        first = await start(client, "waiter")
        queued = await start(client, "echo", "x", session_id=first["session_id"], if_busy="enqueue")
        cancel = await client.post(f"/v1/runs/{queued['id']}/cancel")
        assert cancel.status_code == 202
        assert (await finished(client, queued["id"]))["status"] == "cancelled"
        await client.post(f"/v1/runs/{first['id']}/cancel")
        await finished(client, first["id"])


class TestList:
    """Listings filter, go newest first and page by cursor without gaps or repeats."""

    async def test_filters_and_pages(self, client: httpx.AsyncClient) -> None:
        session = (await client.post("/v1/sessions")).json()
        url = f"/v1/sessions/{session['id']}/runs"
        ids = []
        for i in range(7):
            body = {"agent": "echo", "input": str(i), "if_busy": "enqueue"}
            ids.append((await client.post(url, json=body)).json()["id"])
        await finished(client, ids[-1])
        seen: list[str] = []
        cursor = None
        while True:
            params = {
                "session_id": session["id"],
                "limit": 3,
                **({"cursor": cursor} if cursor else {}),
            }
            page = (await client.get("/v1/runs", params=params)).json()
            seen += [r["id"] for r in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]
        for params, expected in (
            ({"status": "completed"}, ids[::-1]),
            ({"status": "running"}, []),
            ({"agent": "count"}, []),
            ({"trigger": "http"}, ids[::-1]),
            ({"trigger": "schedule"}, []),
        ):
            page = await client.get("/v1/runs", params={"session_id": session["id"], **params})
            assert [r["id"] for r in page.json()["data"]] == expected, params

    async def test_bad_filters(self, client: httpx.AsyncClient) -> None:
        for params in ({"status": "sleeping"}, {"trigger": "cron"}, {"limit": 0}, {"limit": "x"}):
            assert_error(await client.get("/v1/runs", params=params), 422, "invalid_request")


async def subscribers(client: httpx.AsyncClient) -> float:
    """The server's live bus subscriptions, from its metrics."""
    text = (await client.get("/metrics")).text
    return next(
        float(line.split()[1]) for line in text.splitlines() if line.startswith("culm_live_")
    )
