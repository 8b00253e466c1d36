"""Every call of the blocking client against a real server; the async client is the same
code underneath, so it gets a smaller tour."""

from __future__ import annotations

import uuid

import pytest

import culm
from culm.client import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RunFinishedError,
    ServerUnreachable,
    SessionBusyError,
)
from tests.client.serving import DEADLINE, Server, free_port


def tag() -> dict[str, str]:
    """Metadata unique to one test, so tests sharing a server see only their sessions."""
    return {"test": uuid.uuid4().hex}


class TestAgents:
    """``agents()`` lists what the server can run, with input schemas."""

    def test_agents(self, client: culm.Client) -> None:
        agents = {a["name"]: a for a in client.agents()}
        assert agents["echo"] == {
            "name": "echo",
            "description": "Returns its input.",
            "input_schema": {"type": "string"},
        }
        assert {"count", "ticker", "waiter", "crash"} <= set(agents)


class TestSessions:
    """Sessions: create, get, list with metadata filters and cursors, messages, delete."""

    def test_create_and_get(self, client: culm.Client) -> None:
        meta = tag()
        session = client.create_session(metadata=meta)
        assert session["metadata"] == meta
        assert session["parent_id"] is None
        assert client.get_session(session["id"]) == session
        child = client.create_session(parent_id=session["id"])
        assert child["parent_id"] == session["id"]

    def test_list_filters_by_metadata_and_pages_newest_first(self, client: culm.Client) -> None:
        meta = tag()
        made = [client.create_session(metadata=meta)["id"] for _ in range(3)]
        first = client.list_sessions(metadata=meta, limit=2)
        assert [s["id"] for s in first.data] == made[::-1][:2]
        assert first.next_cursor is not None
        rest = client.list_sessions(metadata=meta, limit=2, cursor=first.next_cursor)
        assert [s["id"] for s in rest.data] == made[:1]
        assert rest.next_cursor is None

    def test_messages_of_a_new_session(self, client: culm.Client) -> None:
        session = client.create_session()
        assert client.messages(session["id"]) == []

    def test_delete(self, client: culm.Client) -> None:
        session = client.create_session()
        assert client.delete_session(session["id"]) is None
        with pytest.raises(NotFoundError) as caught:
            client.get_session(session["id"])
        assert isinstance(caught.value, culm.NotFound)
        assert caught.value.status_code == 404

    def test_delete_refused_while_a_run_is_active(self, client: culm.Client) -> None:
        run = client.start_run("waiter")
        with pytest.raises(ConflictError):
            client.delete_session(run["session_id"])
        client.cancel(run["id"])
        client.wait(run["id"], timeout=DEADLINE)
        client.delete_session(run["session_id"])


class TestRuns:
    """Runs: start (new or given session, busy policies, idempotency), get, list, wait,
    cancel."""

    def test_start_wait_get(self, client: culm.Client) -> None:
        run = client.start_run("echo", "hi")
        assert run["agent"] == "echo"
        assert run["input"] == "hi"
        assert run["trigger"] == "http"
        assert run["status"] in ("pending", "running", "completed")
        done = client.wait(run["id"], timeout=DEADLINE)
        assert (done["status"], done["output"], done["error"]) == ("completed", "hi", None)
        assert client.get_run(run["id"]) == done

    def test_a_busy_session_rejects_then_enqueues(self, client: culm.Client) -> None:
        first = client.start_run("waiter")
        session = first["session_id"]
        with pytest.raises(SessionBusyError) as caught:
            client.start_run("echo", "x", session_id=session)
        assert caught.value.active_run_id == first["id"]
        assert isinstance(caught.value, culm.SessionBusy)
        queued = client.start_run("echo", "next", session_id=session, if_busy="enqueue")
        assert queued["status"] == "pending"
        client.cancel(first["id"])
        assert client.wait(queued["id"], timeout=DEADLINE)["output"] == "next"

    def test_interrupt_cancels_the_active_run(self, client: culm.Client) -> None:
        first = client.start_run("waiter")
        second = client.start_run(
            "echo", "now", session_id=first["session_id"], if_busy="interrupt"
        )
        assert client.wait(first["id"], timeout=DEADLINE)["status"] == "cancelled"
        assert client.wait(second["id"], timeout=DEADLINE)["output"] == "now"

    def test_idempotency_key_returns_the_same_run(self, client: culm.Client) -> None:
        key = uuid.uuid4().hex
        one = client.start_run("echo", "once", idempotency_key=key)
        two = client.start_run("echo", "once", idempotency_key=key)
        assert one["id"] == two["id"]

    def test_list_filters_and_pages(self, client: culm.Client) -> None:
        session = client.create_session()["id"]
        ids = []
        for word in ("a", "b", "c"):
            run = client.start_run("echo", word, session_id=session, if_busy="enqueue")
            ids.append(run["id"])
        client.wait(ids[-1], timeout=DEADLINE)
        first = client.list_runs(session_id=session, limit=2)
        assert [r["id"] for r in first.data] == ids[::-1][:2]
        rest = client.list_runs(session_id=session, limit=2, cursor=first.next_cursor)
        assert [r["id"] for r in rest.data] == ids[:1]
        assert rest.next_cursor is None
        completed = client.list_runs(session_id=session, status="completed", agent="echo")
        assert {r["id"] for r in completed.data} == set(ids)
        assert client.list_runs(session_id=session, status="failed").data == []
        assert client.list_runs(session_id=session, trigger="http").data[0]["id"] == ids[-1]

    def test_wait_returns_the_active_run_when_time_runs_out(self, client: culm.Client) -> None:
        run = client.start_run("waiter")
        assert client.wait(run["id"], timeout=0.2)["status"] in ("pending", "running")
        client.cancel(run["id"])

    def test_cancel_is_idempotent_and_says_who(self, client: culm.Client) -> None:
        run = client.start_run("waiter")
        client.cancel(run["id"], reason="enough")
        client.cancel(run["id"])
        done = client.wait(run["id"], timeout=DEADLINE)
        assert done["status"] == "cancelled"
        assert "enough" in (done["error"] or "")

    def test_cancel_of_a_finished_run(self, client: culm.Client) -> None:
        run = client.start_run("echo", "x")
        client.wait(run["id"], timeout=DEADLINE)
        with pytest.raises(RunFinishedError) as caught:
            client.cancel(run["id"])
        assert isinstance(caught.value, culm.RunFinished)
        assert (caught.value.run_id, caught.value.status) == (run["id"], "completed")

    def test_failures_come_back_as_culm_errors(self, client: culm.Client) -> None:
        with pytest.raises(NotFoundError, match="no agent named 'nope'"):
            client.start_run("nope")
        with pytest.raises(InvalidInputError, match="invalid input for agent 'count'"):
            client.start_run("count", "not a number")
        with pytest.raises(culm.NotFound):
            client.get_run("run_missing")
        with pytest.raises(NotFoundError):
            next(client.follow("run_missing"))
        failed = client.wait(client.start_run("crash", "bang")["id"], timeout=DEADLINE)
        assert failed["status"] == "failed"
        assert "bang" in (failed["error"] or "")


class TestEvents:
    """Stored events as pages, and live streams of a run and of a session."""

    def test_pages(self, client: culm.Client) -> None:
        run = client.start_run("count", 5)
        client.wait(run["id"], timeout=DEADLINE)
        first = client.events(run["id"], limit=3)
        assert [e["seq"] for e in first.data] == [1, 2, 3]
        assert (first.next_after, first.done) == (3, False)
        rest = client.events(run["id"], after=first.next_after)
        assert [e["seq"] for e in rest.data] == [4, 5, 6, 7, 8]
        assert rest.done
        assert rest.data[-1]["type"] == "run.completed"
        assert rest.data[-1]["data"] == {"output": 5}

    def test_follow_from_the_start_and_from_the_middle(self, client: culm.Client) -> None:
        run = client.start_run("count", 3)
        types = [e["type"] for e in client.follow(run["id"])]
        assert types == ["run.queued", "run.started", *["test.tick"] * 3, "run.completed"]
        assert [e["seq"] for e in client.follow(run["id"], after=4)] == [5, 6]

    def test_session_events(self, client: culm.Client) -> None:
        session = client.create_session()["id"]
        one = client.start_run("count", 1, session_id=session)
        client.wait(one["id"], timeout=DEADLINE)
        two = client.start_run("count", 1, session_id=session)
        client.wait(two["id"], timeout=DEADLINE)
        page = client.session_events(session)
        assert [(e["run_id"], e["seq"]) for e in page.data] == [
            *[(one["id"], seq) for seq in (1, 2, 3, 4)],
            *[(two["id"], seq) for seq in (1, 2, 3, 4)],
        ]
        positions = [e["pos"] for e in page.data]
        assert positions == sorted(positions)
        stream = client.follow_session(session, after=positions[3])
        followed = [next(stream) for _ in range(4)]
        stream.close()  # a session stream has no end: leaving it closes the connection
        assert followed == page.data[4:]

    def test_breaking_out_of_follow_leaves_the_client_usable(self, client: culm.Client) -> None:
        run = client.start_run("waiter")
        for event in client.follow(run["id"]):
            if event["type"] == "run.started":
                break
        assert client.cancel(run["id"])["id"] == run["id"]
        assert [e["type"] for e in client.follow(run["id"], after=2)] == ["run.cancelled"]


class TestAsyncClient:
    """The async client: the same calls, awaited."""

    async def test_a_tour(self, aclient: culm.AsyncClient) -> None:
        session = await aclient.create_session(metadata={"k": "v"})
        run = await aclient.start_run("count", 2, session_id=session["id"])
        types = [e["type"] async for e in aclient.follow(run["id"])]
        assert types == ["run.queued", "run.started", "test.tick", "test.tick", "run.completed"]
        done = await aclient.wait(run["id"])
        assert done["output"] == 2
        assert (await aclient.get_run(run["id"])) == done
        listed = await aclient.list_runs(session_id=session["id"])
        assert [r["id"] for r in listed.data] == [run["id"]]
        with pytest.raises(RunFinishedError):
            await aclient.cancel(run["id"])


class TestConfiguration:
    """URL and key come from arguments or the environment; no server is a clear error."""

    def test_url_from_the_environment(
        self, server: Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CULM_URL", server.url + "/")
        with culm.Client() as client:
            assert client.url == server.url
            assert client.agents()

    def test_default_url(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("CULM_URL", raising=False)
        with culm.Client() as client:
            assert client.url == "http://127.0.0.1:8000"

    def test_nobody_listening(self) -> None:
        url = f"http://127.0.0.1:{free_port()}"
        with culm.Client(url) as client, pytest.raises(ServerUnreachable, match="cannot reach"):
            client.agents()

    def test_a_closed_client_stays_closed(self, server: Server) -> None:
        client = culm.Client(server.url)
        client.close()
        client.close()
        with pytest.raises(RuntimeError):
            client.agents()
