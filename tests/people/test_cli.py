"""People in the loop from the command line and the Python client: ``culm runs
--waiting``, ``culm approve [--deny]``, ``culm answer``, ``culm say``, and
``Client.approve/answer/send_message``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import culm
from culm.cli import app
from tests.client.serving import Server, wait_until
from tests.fake_openai import Answer, FakeOpenAI
from tests.people.conftest import records


def cli(server: Server, *args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env={"CULM_URL": server.url, "COLUMNS": "200"})
    return result


def waiting(client: culm.Client, run_id: str) -> dict[str, Any]:
    wait_until(lambda: client.get_run(run_id)["status"] == "waiting", what="waiting")
    found = client.get_run(run_id).get("waiting")
    assert found is not None
    return found


def test_list_approve_and_deny(tmp_path: Path, openai_server: FakeOpenAI, server: Server) -> None:
    openai_server.reset(
        Answer("Mailing.", calls=[("send_email", {"to": "a@example.com", "body": "x"})]),
        Answer("Mailing again.", calls=[("send_email", {"to": "b@example.com", "body": "y"})]),
        Answer("One sent, one refused."),
    )
    with culm.Client(server.url) as client:
        run = client.start_run("mailer", "mail two")
        waiting(client, run["id"])
        listed = cli(server, "runs", "--waiting")
        assert listed.exit_code == 0, listed.output
        assert run["id"] in listed.output and "approve send_email" in listed.output
        assert "a@example.com" in listed.output
        shown = cli(server, "status", run["id"])
        assert "waiting for" in shown.output and "send_email" in shown.output
        approved = cli(server, "approve", run["id"])
        assert approved.exit_code == 0, approved.output
        assert "approved" in approved.output
        second = waiting(client, run["id"])
        assert second["arguments"] == {"to": "b@example.com", "body": "y"}
        denied = cli(server, "approve", run["id"], "--deny", "--reason", "b is out")
        assert denied.exit_code == 0 and "refused" in denied.output
        assert client.wait(run["id"], timeout=30)["status"] == "completed"
    assert records(tmp_path) == ["send_email a@example.com x"]
    assert "Error: a person refused this call: b is out" in str(
        openai_server.requests[2]["messages"]
    )


def test_answer_from_the_command_line(server: Server) -> None:
    with culm.Client(server.url) as client:
        run = client.start_run("asker", "o-2")
        waiting(client, run["id"])
        bad = cli(server, "answer", run["id"], '{"number": "x"}')
        assert bad.exit_code != 0 and "does not fit" in bad.output
        good = cli(server, "answer", run["id"], '{"number": 3, "owner": "cy"}')
        assert good.exit_code == 0, good.output
        waiting(client, run["id"])
        client.answer(run["id"], {"number": 4, "owner": "di"})
        done = client.wait(run["id"], timeout=30)
    assert done["output"] == {
        "account": {"number": 3, "owner": "cy"},
        "typed": {"number": 4, "owner": "di"},
    }


def test_answer_text_to_a_question_that_wants_text(
    openai_server: FakeOpenAI, server: Server
) -> None:
    openai_server.reset(
        Answer("", calls=[("ask_user", {"question": "How many?"})]),
        Answer("Noted."),
    )
    with culm.Client(server.url) as client:
        run = client.start_run("mailer", "ask me")
        waiting(client, run["id"])
        # "42" is JSON, but the question wants text: it is sent as text
        assert cli(server, "answer", run["id"], "42").exit_code == 0
        assert client.wait(run["id"], timeout=30)["status"] == "completed"
    assert "'content': '42'" in str(openai_server.requests[1]["messages"][-1])


def test_say_to_a_running_model_agent(
    tmp_path: Path, openai_server: FakeOpenAI, server: Server
) -> None:
    openai_server.reset(
        Answer("At the gate.", calls=[("wait_for_gate", {"n": 1})]),
        Answer("Turned left."),
    )
    with culm.Client(server.url) as client:
        run = client.start_run("steered", "go")
        wait_until(lambda: client.get_run(run["id"])["last_tool"] == "wait_for_gate")
        said = cli(server, "say", run["id"], "turn left")
        assert said.exit_code == 0 and "sent to" in said.output
        sent = client.send_message(run["id"], "and hurry")
        assert sent["content"] == "and hurry"
        (tmp_path / "gate").touch()
        assert client.wait(run["id"], timeout=30)["status"] == "completed"
    last = openai_server.requests[1]["messages"][-2:]
    assert last == [
        {"role": "user", "content": "turn left"},
        {"role": "user", "content": "and hurry"},
    ]


def test_following_a_run_that_waits(server: Server) -> None:
    answered: list[str] = []

    def answer_twice() -> None:
        with culm.Client(server.url) as client:
            wait_until(
                lambda: client.list_runs(agent="asker", status="waiting").data, what="a wait"
            )
            run_id = client.list_runs(agent="asker", status="waiting").data[0]["id"]
            client.answer(run_id, {"number": 5, "owner": "ed"})
            waiting(client, run_id)
            client.answer(run_id, {"number": 6, "owner": "fi"})
            answered.append(run_id)

    helper = threading.Thread(target=answer_twice, daemon=True)
    helper.start()
    followed = cli(server, "run", "asker", "o-9", "--follow")
    helper.join(30)
    assert followed.exit_code == 0, followed.output
    assert "waiting: Which account?" in followed.output
    assert f"answer with: culm answer {answered[0]} TEXT" in followed.output
    assert 'answered {"number":5,"owner":"ed"}' in followed.output


def test_approve_a_run_that_waits_for_nothing(server: Server) -> None:
    with culm.Client(server.url) as client:
        run = client.start_run("asker", "o-3")
        waiting(client, run["id"])
        client.cancel(run["id"])
        with pytest.raises(culm.client.ConflictError):
            client.approve(run["id"])
    refused = cli(server, "approve", run["id"])
    assert refused.exit_code != 0 and "not waiting" in refused.output
