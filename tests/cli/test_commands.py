"""``culm`` commands against a running server: what they print and how they exit."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import culm
from culm.cli import ExitCode
from tests.cli.conftest import Invoke, Process
from tests.client.serving import DEADLINE, Server, free_port, wait_until


def run_id_of(line: str) -> str:
    return next(word for word in line.split() if word.startswith("run_"))


class TestRunFollow:
    """``culm run AGENT INPUT --follow`` streams the run and exits with its outcome."""

    def test_completed(self, culm_cli: Invoke) -> None:
        result = culm_cli("run", "count", "3", "--follow")
        assert result.exit_code == ExitCode.OK
        assert result.stdout == "3\n"  # the output, since the agent streamed no text
        assert result.stderr.count("test.tick") == 3
        assert "completed in" in result.stderr

    def test_a_string_input_and_its_output(self, culm_cli: Invoke) -> None:
        result = culm_cli("run", "echo", "hello world", "-f")
        assert (result.exit_code, result.stdout) == (0, "hello world\n")

    def test_failed(self, culm_cli: Invoke) -> None:
        result = culm_cli("run", "crash", "kaboom", "--follow")
        assert result.exit_code == ExitCode.RUN_FAILED
        assert "failed: RuntimeError: kaboom" in result.stderr or "kaboom" in result.stderr
        assert result.stdout == ""

    def test_cancelled_from_elsewhere(
        self, spawn: Callable[..., Process], culm_cli: Invoke
    ) -> None:
        follower = spawn("run", "waiter", "--follow")
        run_id = run_id_of(follower.wait_for("following"))
        cancelled = culm_cli("cancel", run_id, "--reason", "enough")
        assert cancelled.exit_code == 0, cancelled.output
        assert follower.finish() == ExitCode.RUN_CANCELLED
        assert "cancelled by" in follower.err
        assert "enough" in follower.err

    def test_interrupted_by_a_server_crash(
        self, spawn: Callable[..., Process], tmp_path: Path
    ) -> None:
        server = Server(tmp_path / "culm.db").start()
        try:
            follower = spawn("run", "waiter", "--follow", url=server.url)
            follower.wait_for("following")
            server.stop(signal.SIGKILL)
            server.start()  # finds the run orphaned and ends it; the follower reconnects
            assert follower.finish() == ExitCode.RUN_INTERRUPTED, follower.err
            assert "interrupted: the process running it died" in follower.err
        finally:
            server.stop()

    def test_json_lines(self, culm_cli: Invoke) -> None:
        result = culm_cli("run", "count", "1", "--follow", "--json")
        assert result.exit_code == 0
        events = [json.loads(line) for line in result.stdout.splitlines()]
        assert [e["type"] for e in events] == [
            "run.queued",
            "run.started",
            "test.tick",
            "run.completed",
        ]

    def test_without_follow_prints_the_id(self, culm_cli: Invoke, client: culm.Client) -> None:
        result = culm_cli("run", "echo", "x")
        assert result.exit_code == 0
        run_id = result.stdout.strip()
        assert client.wait(run_id, timeout=DEADLINE)["output"] == "x"
        started = json.loads(culm_cli("run", "echo", "y", "--json").stdout)
        assert (started["agent"], started["input"]) == ("echo", "y")

    def test_on_a_busy_session(self, culm_cli: Invoke, client: culm.Client) -> None:
        active = client.start_run("waiter")
        session = active["session_id"]
        busy = culm_cli("run", "echo", "x", "--session", session)
        assert busy.exit_code == ExitCode.ERROR
        assert f"already has an active run {active['id']}" in busy.stderr
        queued = culm_cli("run", "echo", "x", "--session", session, "--if-busy", "interrupt")
        assert queued.exit_code == 0
        assert client.wait(queued.stdout.strip(), timeout=DEADLINE)["status"] == "completed"
        assert client.get_run(active["id"])["status"] == "cancelled"


class TestCtrlC:
    """Ctrl-C while following asks whether to cancel the run or to detach from it."""

    def test_cancel(self, spawn: Callable[..., Process], client: culm.Client) -> None:
        follower = spawn("run", "waiter", "--follow")
        run_id = run_id_of(follower.wait_for("following"))
        follower.proc.send_signal(signal.SIGINT)
        follower.wait_for("[c]ancel")
        follower.answer("c\n")
        assert follower.finish() == ExitCode.RUN_CANCELLED
        assert client.get_run(run_id)["status"] == "cancelled"

    def test_detach(self, spawn: Callable[..., Process], client: culm.Client) -> None:
        follower = spawn("run", "waiter", "--follow")
        run_id = run_id_of(follower.wait_for("following"))
        follower.proc.send_signal(signal.SIGINT)
        follower.wait_for("[c]ancel")
        follower.answer("d\n")
        assert follower.finish() == ExitCode.DETACHED
        assert f"culm events {run_id} --follow" in follower.err
        assert client.get_run(run_id)["status"] == "running"
        client.cancel(run_id)

    def test_a_second_ctrl_c_detaches(
        self, spawn: Callable[..., Process], client: culm.Client
    ) -> None:
        follower = spawn("run", "waiter", "--follow")
        run_id = run_id_of(follower.wait_for("following"))
        follower.proc.send_signal(signal.SIGINT)
        follower.wait_for("[c]ancel")
        follower.proc.send_signal(signal.SIGINT)
        assert follower.finish() == ExitCode.DETACHED
        assert client.get_run(run_id)["status"] == "running"
        client.cancel(run_id)

    def test_events_follow_stops_quietly(
        self, spawn: Callable[..., Process], client: culm.Client
    ) -> None:
        run = client.start_run("waiter")
        follower = spawn("events", run["id"], "--follow")
        wait_until(lambda: "run.started" in follower.out, DEADLINE, "the events to be printed")
        follower.proc.send_signal(signal.SIGINT)
        assert follower.finish() == ExitCode.DETACHED
        assert follower.err == ""
        client.cancel(run["id"])


class TestInspecting:
    """``runs``, ``status``, ``events`` and ``agents`` show what the server knows."""

    def test_runs_json_and_table(self, culm_cli: Invoke, client: culm.Client) -> None:
        run = client.start_run("count", 2)
        client.wait(run["id"], timeout=DEADLINE)
        listed = culm_cli("runs", "--json", "--session", run["session_id"])
        assert listed.exit_code == 0
        assert json.loads(listed.stdout) == [client.get_run(run["id"])]
        table = culm_cli("runs", "--status", "completed", "--agent", "count")
        assert run["id"] in table.stdout
        assert culm_cli("runs", "--status", "failed", "--agent", "count", "--json").stdout == (
            "[]\n"
        )

    def test_status(self, culm_cli: Invoke, client: culm.Client) -> None:
        run = client.start_run("echo", "hi")
        client.wait(run["id"], timeout=DEADLINE)
        shown = culm_cli("status", run["id"])
        assert shown.exit_code == 0
        for text in (run["id"], "echo", "completed", run["session_id"], "hi"):
            assert text in shown.stdout
        assert json.loads(culm_cli("status", run["id"], "--json").stdout) == client.get_run(
            run["id"]
        )

    def test_events_after(self, culm_cli: Invoke, client: culm.Client) -> None:
        run = client.start_run("count", 3)
        client.wait(run["id"], timeout=DEADLINE)
        lines = culm_cli("events", run["id"], "--after", "2", "--json").stdout.splitlines()
        assert [json.loads(line)["seq"] for line in lines] == [3, 4, 5, 6]
        table = culm_cli("events", run["id"], "--after", "5").stdout.splitlines()
        assert len(table) == 1
        assert "run.completed" in table[0]

    def test_events_follow(self, culm_cli: Invoke, client: culm.Client) -> None:
        run = client.start_run("ticker", {"n": 3, "delay": 0.05})
        followed = culm_cli("events", run["id"], "--follow", "--json")
        types = [json.loads(line)["type"] for line in followed.stdout.splitlines()]
        assert types == ["run.queued", "run.started", *["test.tick"] * 3, "run.completed"]

    def test_agents(self, culm_cli: Invoke) -> None:
        table = culm_cli("agents")
        assert "ticker" in table.stdout
        assert "Emits" in table.stdout
        listed = json.loads(culm_cli("agents", "--json").stdout)
        assert {
            "name": "echo",
            "description": "Returns its input.",
            "input_schema": {"type": "string"},
        } in listed


class TestCancel:
    """``culm cancel`` asks once or twice harmlessly; a finished run is an error."""

    def test_cancel_and_wait(self, culm_cli: Invoke, client: culm.Client) -> None:
        run = client.start_run("waiter")
        result = culm_cli("cancel", run["id"], "--wait")
        assert (result.exit_code, result.stdout) == (0, f"{run['id']} cancelled\n")
        again = culm_cli("cancel", run["id"])
        assert (again.exit_code, again.stdout) == (0, f"{run['id']} cancelled\n")

    def test_a_finished_run(self, culm_cli: Invoke, client: culm.Client) -> None:
        run = client.start_run("echo", "x")
        client.wait(run["id"], timeout=DEADLINE)
        result = culm_cli("cancel", run["id"])
        assert result.exit_code == ExitCode.ERROR
        assert result.stderr == (f"error: run {run['id']} already finished with status completed\n")


class TestErrors:
    """Expected failures print one line and exit 1, never a traceback."""

    def test_unknown_run(self, culm_cli: Invoke) -> None:
        for command in ("status", "events", "cancel"):
            result = culm_cli(command, "run_nope")
            assert result.exit_code == ExitCode.ERROR
            assert result.stderr.startswith("error: ")
            assert "Traceback" not in result.output

    def test_nobody_listening(self, culm_cli: Invoke) -> None:
        result = culm_cli("runs", "--url", f"http://127.0.0.1:{free_port()}")
        assert result.exit_code == ExitCode.ERROR
        assert "cannot reach the culm server" in result.stderr
        assert "Traceback" not in result.output

    def test_serve_refuses_what_it_cannot_serve(self, culm_cli: Invoke) -> None:
        missing = culm_cli("serve", "no_such_module:app")
        assert missing.exit_code == ExitCode.ERROR
        assert "cannot load 'no_such_module:app'" in missing.stderr
        exposed = culm_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()))
        assert exposed.exit_code == ExitCode.ERROR
        assert "refusing to listen on 0.0.0.0" in exposed.stderr
        bad_key = culm_cli("serve", "--api-key", "nokey", "--port", str(free_port()))
        assert bad_key.exit_code == ExitCode.ERROR
        assert "KEY=TENANT" in bad_key.stderr


class TestFirstHour:
    """Small things a new user notices: filters like the API's, honest labels, plain text."""

    def test_runs_filters_like_the_api(self, culm_cli: Invoke, client: culm.Client) -> None:
        parent = client.start_run("waiter")
        child = client.start_run("echo", "x", parent_run_id=parent["id"])
        client.wait(child["id"], timeout=DEADLINE)
        by_parent = json.loads(culm_cli("runs", "--parent", parent["id"], "--json").stdout)
        assert [r["id"] for r in by_parent] == [child["id"]]
        spawned = json.loads(culm_cli("runs", "--trigger", "spawn", "--json").stdout)
        assert child["id"] in [r["id"] for r in spawned]
        assert parent["id"] not in [r["id"] for r in spawned]
        none = culm_cli("runs", "--schedule", "sch_none", "--json")
        assert (none.exit_code, none.stdout) == (0, "[]\n")
        bad = culm_cli("runs", "--trigger", "carrier-pigeon")
        assert bad.exit_code == ExitCode.USAGE
        client.cancel(parent["id"])

    def test_runs_of_a_schedule(self, culm_cli: Invoke, client: culm.Client) -> None:
        """``--schedule`` lists the runs that schedule started, and no others."""
        later = datetime.now(UTC) + timedelta(days=1)  # only the triggers below fire
        fired: dict[str, str] = {}
        for name in ("mine", "other"):
            schedule = client.create_schedule("echo", name, at=later, name=name)
            firing = client.trigger_schedule(schedule["id"])
            assert firing["run_id"], firing
            fired[schedule["id"]] = firing["run_id"]
            client.wait(firing["run_id"], timeout=DEADLINE)
        client.start_run("echo", "by hand")
        for schedule_id, run_id in fired.items():
            listed = json.loads(culm_cli("runs", "--schedule", schedule_id, "--json").stdout)
            assert [(r["id"], r["trigger"]) for r in listed] == [(run_id, "schedule")]
            client.delete_schedule(schedule_id)

    def test_status_of_a_cancelled_run_says_cancelled(
        self, culm_cli: Invoke, client: culm.Client
    ) -> None:
        run = client.start_run("waiter")
        client.cancel(run["id"])
        client.wait(run["id"], timeout=DEADLINE)
        shown = culm_cli("status", run["id"]).stdout
        labels = [line.split()[0] for line in shown.splitlines() if line.strip()]
        assert "cancelled" in labels
        assert "completed" not in labels

    def test_agents_descriptions_are_plain_text(self, culm_cli: Invoke) -> None:
        table = culm_cli("agents").stdout
        assert "``" not in table
        assert "Emits input ticks as fast as it can" in table

    def test_answering_cancel_after_the_run_ended(
        self, spawn: Callable[..., Process], client: culm.Client
    ) -> None:
        follower = spawn("run", "waiter", "--follow")
        run_id = run_id_of(follower.wait_for("following"))
        follower.proc.send_signal(signal.SIGINT)
        follower.wait_for("[c]ancel")
        client.cancel(run_id, reason="from elsewhere")
        client.wait(run_id, timeout=DEADLINE)
        follower.answer("c\n")
        assert follower.finish() == ExitCode.RUN_CANCELLED
        assert f"{run_id} had already ended (cancelled); nothing to cancel" in follower.err
