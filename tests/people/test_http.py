"""People in the loop over HTTP, against a real ``culm serve`` and the test's OpenAI-
compatible server: approvals (across a server restart), refusals, questions with a schema,
steering a running model agent, ``if_busy=steer``, cancel and timeouts of a wait."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx

from tests.client.serving import Server, wait_until
from tests.fake_openai import Answer, FakeOpenAI
from tests.people.conftest import APP, FAST, records
from tests.resume.test_kill_server import Follower


def start(server: Server, agent: str, input: Any, **more: Any) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/runs", json={"agent": agent, "input": input, **more})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def get(server: Server, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{server.url}/v1/runs/{run_id}").json()
    return body


def until_status(server: Server, run_id: str, status: str) -> dict[str, Any]:
    wait_until(lambda: get(server, run_id)["status"] == status, what=f"status {status}")
    return get(server, run_id)


def give(server: Server, run_id: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/runs/{run_id}/input", json=body)


def ended(server: Server, run_id: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/runs/{run_id}/wait", params={"timeout": 30})
    body: dict[str, Any] = response.json()
    assert body["status"] not in ("pending", "running", "waiting"), body
    return body


def events(server: Server, run_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{server.url}/v1/runs/{run_id}/events",
        params={"limit": 1000},
        headers={"Accept": "application/json"},
    )
    data: list[dict[str, Any]] = response.json()["data"]
    assert [e["seq"] for e in data] == list(range(1, len(data) + 1))
    return data


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in request["messages"] if m.get("role") == "tool"]


class TestApproval:
    def test_approved_after_a_restart_with_edited_arguments(
        self, tmp_path: Path, openai_server: FakeOpenAI, server: Server
    ) -> None:
        openai_server.reset(
            Answer(
                "Looking up, then mailing.",
                calls=[
                    ("lookup", {"name": "ann"}),
                    ("send_email", {"to": "ann@example.com", "body": "hi"}),
                ],
            ),
            Answer("Mailed Ann."),
        )
        run = start(server, "mailer", "mail ann")
        follower = Follower(server.url, run["id"])
        wait_until(lambda: follower.has("run.waiting"), what="run.waiting")
        waiting = until_status(server, run["id"], "waiting")["waiting"]
        assert waiting["kind"] == "approval" and waiting["tool"] == "send_email"
        assert waiting["arguments"] == {"to": "ann@example.com", "body": "hi"}
        # the call that needs nobody was made before the run stopped; the mail was not sent
        assert records(tmp_path) == ["lookup ann"]
        listed = httpx.get(f"{server.url}/v1/runs", params={"status": "waiting"}).json()
        assert [r["id"] for r in listed["data"]] == [run["id"]]

        server.stop(signal.SIGKILL)  # a waiting run holds no process: nothing to lose
        server.start()
        assert get(server, run["id"])["status"] == "waiting"
        edited = {"to": "ann@example.com", "body": "hello Ann"}
        answered = give(
            server, run["id"], call_id=waiting["call_id"], approve=True, arguments=edited
        )
        assert answered.status_code == 202, answered.text
        assert ended(server, run["id"])["status"] == "completed"
        assert records(tmp_path) == ["lookup ann", "send_email ann@example.com hello Ann"]
        second = openai_server.requests[1]
        assert tool_messages(second) == ["ann is at ann@example.com", "sent to ann@example.com"]
        kinds = [e["type"] for e in events(server, run["id"])]
        assert kinds.count("run.waiting") == 1 and kinds.count("input.received") == 1
        assert kinds.count("round.started") == 2 and kinds[-1] == "run.completed"
        taken_up = kinds.index("input.received") + 1
        assert kinds[taken_up] == "run.resumed"  # taken up again: its stream says it runs
        # the follower, connected across the restart, saw every event once
        assert follower.done.wait(30)
        assert [s for s, _, _ in follower.seen] == list(range(1, len(kinds) + 1))

    def test_refused_with_a_reason(
        self, tmp_path: Path, openai_server: FakeOpenAI, server: Server
    ) -> None:
        openai_server.reset(
            Answer("Mailing.", calls=[("send_email", {"to": "bob@example.com", "body": "x"})]),
            Answer("Not sent, as asked."),
        )
        run = start(server, "mailer", "mail bob")
        waiting = until_status(server, run["id"], "waiting")["waiting"]
        refused = give(
            server, run["id"], call_id=waiting["call_id"], approve=False, reason="not to bob"
        )
        assert refused.status_code == 202
        assert ended(server, run["id"])["output"]["text"] == "Not sent, as asked."
        assert records(tmp_path) == []
        assert tool_messages(openai_server.requests[1]) == [
            "Error: a person refused this call: not to bob"
        ]
        failed = [e["data"] for e in events(server, run["id"]) if e["type"] == "tool.failed"]
        assert failed[0]["refused"] is True

    def test_bad_input_is_refused_and_the_run_keeps_waiting(
        self, openai_server: FakeOpenAI, server: Server
    ) -> None:
        openai_server.reset(
            Answer("Mailing.", calls=[("send_email", {"to": "c@example.com", "body": "x"})]),
            Answer("Done."),
        )
        run = start(server, "mailer", "mail c")
        call_id = until_status(server, run["id"], "waiting")["waiting"]["call_id"]
        wrong_call = give(server, run["id"], call_id="call_nope", approve=True)
        assert wrong_call.status_code == 409
        assert wrong_call.json()["error"]["code"] == "not_waiting"
        no_decision = give(server, run["id"], call_id=call_id, answer="yes")
        assert no_decision.status_code == 422
        assert "approve" in no_decision.json()["error"]["message"]
        assert get(server, run["id"])["status"] == "waiting"
        assert give(server, run["id"], call_id=call_id, approve=True).status_code == 202
        assert ended(server, run["id"])["status"] == "completed"
        again = give(server, run["id"], call_id=call_id, approve=True)
        assert again.status_code == 409  # answered once

    def test_a_waiting_run_is_cancelled_at_once(
        self, openai_server: FakeOpenAI, server: Server
    ) -> None:
        openai_server.reset(
            Answer("Mailing.", calls=[("send_email", {"to": "d@example.com", "body": "x"})]),
        )
        run = start(server, "mailer", "mail d")
        call_id = until_status(server, run["id"], "waiting")["waiting"]["call_id"]
        cancelled = httpx.post(f"{server.url}/v1/runs/{run['id']}/cancel", json={"reason": "no"})
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
        assert give(server, run["id"], call_id=call_id, approve=True).status_code == 409

    def test_a_waiting_run_holds_its_session(
        self, openai_server: FakeOpenAI, server: Server
    ) -> None:
        openai_server.reset(
            Answer("Mailing.", calls=[("send_email", {"to": "e@example.com", "body": "x"})]),
            Answer("Done."),
        )
        run = start(server, "mailer", "mail e")
        until_status(server, run["id"], "waiting")
        busy = httpx.post(
            f"{server.url}/v1/sessions/{run['session_id']}/runs",
            json={"agent": "mailer", "input": "again"},
        )
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "session_busy"

    def test_timeout_goes_on_refused(self, tmp_path: Path, openai_server: FakeOpenAI) -> None:
        openai_server.reset(
            Answer("Looking.", calls=[("lookup", {"name": "fay"})]),
            Answer("Nobody approved."),
        )
        server = Server(tmp_path / "culm.db", APP, env=FAST).start()
        try:
            run = start(server, "mailer_in_a_hurry", "look fay up")
            assert ended(server, run["id"])["status"] == "completed"
            received = [e for e in events(server, run["id"]) if e["type"] == "input.received"]
            assert received[0]["data"]["timed_out"] is True
            assert received[0]["data"]["approve"] is False
        finally:
            server.stop()
        assert records(tmp_path) == []


class TestQuestions:
    def test_ask_with_a_schema_and_a_bad_answer(self, tmp_path: Path, server: Server) -> None:
        run = start(server, "asker", "order-1")
        waiting = until_status(server, run["id"], "waiting")["waiting"]
        assert waiting["question"] == "Which account?"
        assert waiting["schema"]["required"] == ["number", "owner"]
        bad = give(server, run["id"], call_id=waiting["call_id"], answer={"number": "twelve"})
        assert bad.status_code == 422
        message = bad.json()["error"]["message"]
        assert "number" in message and "owner" in message
        assert get(server, run["id"])["status"] == "waiting"
        good = {"number": 12, "owner": "ann"}
        assert give(server, run["id"], call_id="ask-1", answer=good).status_code == 202
        second = until_status(server, run["id"], "waiting")["waiting"]
        assert second["call_id"] == "ask-2" and second["schema"]["title"] == "Account"
        server.stop()
        server.start()
        typed = {"number": 7, "owner": "bo"}
        assert give(server, run["id"], call_id="ask-2", answer=typed).status_code == 202
        done = ended(server, run["id"])
        assert done["output"] == {"account": good, "typed": typed}
        assert records(tmp_path) == ["note order-1"]  # the step between ran once

    def test_a_model_agent_asks_the_user(self, openai_server: FakeOpenAI, server: Server) -> None:
        openai_server.reset(
            Answer("", calls=[("ask_user", {"question": "To whom?"})]),
            Answer("Will mail Gil."),
        )
        run = start(server, "mailer", "mail someone")
        waiting = until_status(server, run["id"], "waiting")["waiting"]
        assert waiting["kind"] == "question" and waiting["question"] == "To whom?"
        wrong_type = give(server, run["id"], call_id=waiting["call_id"], answer=42)
        assert wrong_type.status_code == 422
        assert give(server, run["id"], call_id=waiting["call_id"], answer="Gil").status_code == 202
        assert ended(server, run["id"])["status"] == "completed"
        assert tool_messages(openai_server.requests[1]) == ["Gil"]

    def test_nobody_answers_in_time(self, tmp_path: Path) -> None:
        server = Server(tmp_path / "culm.db", APP, env=FAST).start()
        try:
            run = start(server, "impatient", "?")
            done = ended(server, run["id"])
        finally:
            server.stop()
        assert done["status"] == "failed" and "nobody answered within" in done["error"]

    def test_an_agent_that_cannot_be_taken_up_again_cannot_ask(self, server: Server) -> None:
        run = start(server, "forgetful", "?")
        done = ended(server, run["id"])
        assert done["status"] == "failed" and "resume=True" in done["error"]


class TestSteering:
    def test_a_message_is_taken_in_at_the_next_round(
        self, tmp_path: Path, openai_server: FakeOpenAI, server: Server
    ) -> None:
        openai_server.reset(
            Answer("Waiting at the gate.", calls=[("wait_for_gate", {"n": 1})]),
            Answer("Heading north, as you say."),
        )
        run = start(server, "steered", "go south")
        wait_until(lambda: get(server, run["id"])["last_tool"] == "wait_for_gate", what="round 1")
        sent = httpx.post(
            f"{server.url}/v1/runs/{run['id']}/messages", json={"content": "go north instead"}
        )
        assert sent.status_code == 202, sent.text
        (tmp_path / "gate").touch()
        assert ended(server, run["id"])["status"] == "completed"
        second = openai_server.requests[1]["messages"]
        assert second[-1] == {"role": "user", "content": "go north instead"}
        injected = [e for e in events(server, run["id"]) if e["type"] == "message.injected"]
        assert [e["data"]["content"] for e in injected] == ["go north instead"]
        assert injected[0]["data"]["round"] == 2
        history = httpx.get(f"{server.url}/v1/sessions/{run['session_id']}/messages").json()
        roles = [m["role"] for m in history["data"]]
        assert roles == ["user", "assistant", "tool", "user", "assistant"]

    def test_if_busy_steer(self, tmp_path: Path, openai_server: FakeOpenAI, server: Server) -> None:
        openai_server.reset(
            Answer("Waiting at the gate.", calls=[("wait_for_gate", {"n": 1})]),
            Answer("Both done."),
        )
        first = start(server, "steered", "first task")
        wait_until(lambda: get(server, first["id"])["last_tool"] == "wait_for_gate", what="r1")
        steered = httpx.post(
            f"{server.url}/v1/sessions/{first['session_id']}/runs",
            json={"agent": "steered", "input": "also this", "if_busy": "steer"},
        )
        assert steered.status_code == 202, steered.text
        assert steered.json()["id"] == first["id"]
        assert steered.json()["steered"]["content"] == "also this"
        (tmp_path / "gate").touch()
        assert ended(server, first["id"])["status"] == "completed"
        assert openai_server.requests[1]["messages"][-1]["content"] == "also this"
        # on a free session, steer starts a run as usual
        fresh = httpx.post(
            f"{server.url}/v1/sessions/{first['session_id']}/runs",
            json={"agent": "steered", "input": "now", "if_busy": "steer"},
        )
        assert fresh.status_code == 201 and fresh.json()["id"] != first["id"]

    def test_messages_only_for_model_agents_that_have_not_ended(self, server: Server) -> None:
        run = start(server, "asker", "x")
        until_status(server, run["id"], "waiting")
        refused = httpx.post(f"{server.url}/v1/runs/{run['id']}/messages", json={"content": "hi"})
        assert (
            refused.status_code == 409 and "not a model agent" in refused.json()["error"]["message"]
        )
        empty = httpx.post(f"{server.url}/v1/runs/{run['id']}/messages", json={"content": ""})
        assert empty.status_code == 422
