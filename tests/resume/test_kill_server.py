"""kill -9 of a real server in the middle of a model agent's run: after a restart the run
goes on and completes; each tool call that completed ran once; the stream is 1..N with one
end; a subscriber connected across the crash saw every event once."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import culm
from tests.client.serving import Server, wait_until
from tests.fake_openai import Answer, FakeOpenAI, Stall

APP = "tests.resume.served_app:app"


class Follower:
    """An SSE client that follows a run across server restarts, resuming by seq."""

    def __init__(self, url: str, run_id: str) -> None:
        self.url, self.run_id = url, run_id
        self.seen: list[tuple[int, str, dict[str, Any]]] = []
        self.done = threading.Event()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not self.done.is_set():
            after = self.seen[-1][0] if self.seen else 0
            try:
                with httpx.stream(
                    "GET",
                    f"{self.url}/v1/runs/{self.run_id}/events",
                    params={"after": after},
                    headers={"Accept": "text/event-stream"},
                    timeout=httpx.Timeout(5.0, read=30.0),
                ) as response:
                    if response.status_code == 204:
                        self.done.set()
                        return
                    self._read(response)
            except httpx.HTTPError:
                time.sleep(0.1)  # the server is down: try again
        self.done.set()

    def _read(self, response: httpx.Response) -> None:
        seq, kind, data = 0, "", ""
        for line in response.iter_lines():
            if line.startswith("id:"):
                seq = int(line[3:].strip())
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and seq:
                self.seen.append((seq, kind, orjson.loads(data)["data"]))
                if kind in ("run.completed", "run.failed", "run.cancelled", "run.interrupted"):
                    self.done.set()
                    return
                seq = 0

    def has(self, kind: str, **data: Any) -> bool:
        return any(
            k == kind and all(d.get(f) == v for f, v in data.items()) for _, k, d in self.seen
        )


def start_worker_run(server: Server, agent: str = "worker", input: Any = "go") -> str:
    response = httpx.post(f"{server.url}/v1/runs", json={"agent": agent, "input": input})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


def records(path: Path) -> list[str]:
    return [line.split()[0] + " " + line.split()[1] for line in path.read_text().splitlines()]


def check_stream(follower: Follower, server: Server) -> list[dict[str, Any]]:
    assert follower.done.wait(60), "the run did not end"
    seqs = [seq for seq, _, _ in follower.seen]
    assert seqs == list(range(1, len(seqs) + 1)), "each event once, in order"
    events = httpx.get(
        f"{server.url}/v1/runs/{follower.run_id}/events",
        params={"limit": 1000},
        headers={"Accept": "application/json"},
    ).json()["data"]
    assert [e["seq"] for e in events] == seqs  # the subscriber saw the whole log
    assert sum(e["type"].startswith("run.") and e["type"] in _ENDS for e in events) == 1
    return list(events)


_ENDS = {"run.completed", "run.failed", "run.cancelled", "run.interrupted"}


Serve = Callable[..., Server]


@pytest.fixture
def serve(tmp_path: Path, db_url: str) -> Serve:
    """A server of ``served_app`` on this test's database (a SQLite file, or a PostgreSQL
    schema with ``CULM_TEST_DATABASE=postgresql``). Its environment names the fake model
    server and the record file (set with ``monkeypatch`` by the ``env`` fixture, so nothing
    leaks into other tests), and the keywords given (``HOLD_AFTER``: see ``served_app``)."""

    def make(**env: str) -> Server:
        server = Server(tmp_path / "culm.db", APP, env=env)
        server.db_url = db_url
        return server

    return make


def held_after(tmp_path: Path, kind: str) -> tuple[dict[str, str], Path]:
    """The environment that stops the run for good once its first ``kind`` event is
    committed, and the file that says it happened."""
    held = tmp_path / "held"
    return {"HOLD_AFTER": kind, "HOLD_FILE": str(held)}, held


@contextmanager
def across_a_kill(
    server: Server,
    ready: Callable[[Follower], object],
    what: str,
    start: Callable[[Server], str] = start_worker_run,
    restarted: Callable[[], object] | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Start a run on a real server, kill the server with -9 once ``ready`` (given the
    run's follower), start it again (then call ``restarted``): the run's id and the whole
    stream the follower saw across the kill, while the restarted server still runs."""
    server.start()
    try:
        run_id = start(server)
        follower = Follower(server.url, run_id)
        wait_until(lambda: ready(follower), what=what)
        server.stop(signal.SIGKILL)
        server.start()
        if restarted is not None:
            restarted()
        yield run_id, check_stream(follower, server)
    finally:
        server.stop()


def killed(
    server: Server, ready: Callable[[Follower], object], what: str, **how: Any
) -> tuple[str, list[dict[str, Any]]]:
    """``across_a_kill``, its server stopped at the end."""
    with across_a_kill(server, ready, what, **how) as (run_id, events):
        return run_id, events


def killed_after(tmp_path: Path, serve: Serve, kind: str) -> list[dict[str, Any]]:
    """The model agent's stream across a kill -9 made once its first ``kind`` event is
    committed (the run is held there until the kill)."""
    env, held = held_after(tmp_path, kind)
    return killed(serve(**env), lambda _: held.exists(), f"its first {kind}")[1]


def before_resume(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The last event the first process committed."""
    at = next(i for i, e in enumerate(events) if e["type"] == "run.resumed")
    return events[at - 1]


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, openai_server: FakeOpenAI) -> None:
    monkeypatch.setenv("FAKE_OPENAI_URL", openai_server.base_url)
    monkeypatch.setenv("RECORD_FILE", str(tmp_path / "records.txt"))
    monkeypatch.setenv("GATE_FILE", str(tmp_path / "gate"))


class TestKillNine:
    def test_mid_answer_after_a_completed_tool(
        self, tmp_path: Path, openai_server: FakeOpenAI, serve: Serve
    ) -> None:
        record_file = tmp_path / "records.txt"
        record_file.touch()
        openai_server.reset(
            Answer("Recording.", calls=[("record", {"n": 1})]),
            Stall("Half an"),  # round 2 streams, then hangs: the server dies here
            Answer("All done."),
        )
        server = serve()
        with (
            across_a_kill(
                server, lambda f: f.has("message.delta", round=2), "round 2 streaming"
            ) as (run_id, events),
            culm.Client(server.url) as client,  # the run says it was resumed once
        ):
            info = client.get_run(run_id)
            listed = client.list_runs(agent="worker")
        assert (info["status"], info["attempt"]) == ("completed", 1)
        assert [(r["id"], r["attempt"]) for r in listed.data] == [(run_id, 1)]
        kinds = [e["type"] for e in events]
        assert kinds[-1] == "run.completed"
        assert events[-1]["data"]["output"]["text"] == "All done."
        assert kinds.count("run.resumed") == 1 and kinds.count("round.restarted") == 1
        assert records(record_file) == ["record 1"]  # ran once, in the first process
        assert len(openai_server.requests) == 3

    def test_between_rounds(self, tmp_path: Path, openai_server: FakeOpenAI, serve: Serve) -> None:
        record_file = tmp_path / "records.txt"
        record_file.touch()
        openai_server.reset(
            Answer("Recording.", calls=[("record", {"n": 1})]),
            Answer("All done."),
        )
        events = killed_after(tmp_path, serve, "round.completed")
        assert before_resume(events) == {**before_resume(events), "type": "round.completed"}
        assert before_resume(events)["data"] == {"round": 1}
        kinds = [e["type"] for e in events]
        assert kinds[-1] == "run.completed"
        assert events[-1]["data"]["output"]["text"] == "All done."
        assert "round.restarted" not in kinds
        assert [e["data"]["round"] for e in events if e["type"] == "round.started"] == [1, 2]
        assert kinds.count("round.completed") == 2
        assert records(record_file) == ["record 1"]
        assert len(openai_server.requests) == 2  # round 1 was not asked again

    def test_right_after_a_tool_completed(
        self, tmp_path: Path, openai_server: FakeOpenAI, serve: Serve
    ) -> None:
        record_file = tmp_path / "records.txt"
        record_file.touch()
        openai_server.reset(
            Answer("Recording.", calls=[("record", {"n": 1})]),
            Answer("All done."),
        )
        events = killed_after(tmp_path, serve, "tool.completed")
        last = before_resume(events)
        assert last["type"] == "tool.completed" and last["data"]["result"] == "recorded 1"
        kinds = [e["type"] for e in events]
        assert kinds[-1] == "run.completed"
        assert kinds.count("tool.completed") == 1 and kinds.count("tool.started") == 1
        assert [e["data"]["round"] for e in events if e["type"] == "round.completed"] == [1, 2]
        assert records(record_file) == ["record 1"]  # its recorded result was used
        assert len(openai_server.requests) == 2
        second = openai_server.requests[1]["messages"]
        assert any(m.get("role") == "tool" and m.get("content") == "recorded 1" for m in second)

    def test_inside_a_tool_that_is_idempotent(
        self, tmp_path: Path, openai_server: FakeOpenAI, serve: Serve
    ) -> None:
        record_file = tmp_path / "records.txt"
        record_file.touch()
        openai_server.reset(
            Answer("Recording safely.", calls=[("slow_safe_record", {"n": 1})]),
            Answer("Recorded."),
        )

        # the tool runs, and its start is committed (an idempotent tool's start is not
        # waited for before it runs: the answer could still be lost with the process)
        def running(follower: Follower) -> bool:
            return records(record_file) == ["slow_safe_record 1"] and follower.has("tool.started")

        run_id, events = killed(serve(), running, "the tool")
        kinds = [e["type"] for e in events]
        assert kinds[-1] == "run.completed"
        assert "tool.failed" not in kinds
        completed = [e["data"] for e in events if e["type"] == "tool.completed"]
        assert len(completed) == 1 and completed[0]["result"] == "safely recorded 1"
        # run again to its end, in the new process, under the same key
        lines = [line.split() for line in record_file.read_text().splitlines()]
        assert [line[:2] for line in lines] == [["slow_safe_record", "1"]] * 2
        assert [line[2] for line in lines] == [f"{run_id}:1:0"] * 2
        assert lines[0][3] != lines[1][3]
        second = openai_server.requests[1]["messages"]
        assert any(m.get("content") == "safely recorded 1" for m in second)

    def test_inside_a_tool_that_is_not_idempotent(
        self, tmp_path: Path, openai_server: FakeOpenAI, serve: Serve
    ) -> None:
        record_file = tmp_path / "records.txt"
        record_file.touch()
        openai_server.reset(
            Answer("Recording slowly.", calls=[("slow_record", {"n": 1})]),
            Answer("It may not have worked; stopping."),
        )
        _, events = killed(serve(), lambda _: records(record_file) == ["slow_record 1"], "the tool")
        assert events[-1]["type"] == "run.completed"
        failed = [e["data"] for e in events if e["type"] == "tool.failed"]
        assert len(failed) == 1 and "interrupted by a restart" in failed[0]["error"]
        assert records(record_file) == ["slow_record 1"]  # not run again
        second = openai_server.requests[1]["messages"]
        assert any("interrupted by a restart" in str(m.get("content")) for m in second)


class TestShutdown:
    def test_sigterm_hands_the_run_back_and_a_restart_resumes_it(
        self, tmp_path: Path, openai_server: FakeOpenAI, serve: Serve
    ) -> None:
        record_file = tmp_path / "records.txt"
        record_file.touch()
        openai_server.reset(
            Answer("Recording.", calls=[("record", {"n": 1})]),
            Stall("Half an"),
            Answer("All done."),
        )
        server = serve().start()
        try:
            follower = Follower(server.url, start_worker_run(server))
            wait_until(lambda: follower.has("message.delta", round=2), what="round 2 streaming")
            server.stop(signal.SIGTERM)
            # it exited by itself (uvicorn raises the signal again once it has shut down)
            assert server.proc is not None and server.proc.returncode in (0, -signal.SIGTERM)
            assert "1 runs handed back, to be resumed" in server.log()
            server.start()
            events = check_stream(follower, server)
        finally:
            server.stop()
        kinds = [e["type"] for e in events]
        assert kinds[-1] == "run.completed" and "run.interrupted" not in kinds
        resumed = [e["data"] for e in events if e["type"] == "run.resumed"]
        assert len(resumed) == 1
        assert resumed[0]["cause"] == "shutdown" and resumed[0]["attempt"] == 1
        assert kinds.count("round.restarted") == 1
        assert records(record_file) == ["record 1"]


class TestKillNineFunctionAgent:
    def test_steps_run_once_across_the_kill(
        self, tmp_path: Path, openai_server: FakeOpenAI, serve: Serve
    ) -> None:
        record_file, gate = tmp_path / "records.txt", tmp_path / "gate"
        record_file.touch()
        _, events = killed(
            serve(),
            lambda f: f.has("shop.charged"),
            "the charge",
            start=lambda server: start_worker_run(server, "checkout", "o-7"),
            restarted=gate.touch,  # only the resumed run goes past its gate
        )
        assert events[-1]["type"] == "run.completed"
        assert events[-1]["data"]["output"] == {"charge": "ch_o-7", "parcel": "parcel_o-7"}
        assert records(record_file) == ["charge o-7", "ship o-7"]
        kinds = [e["type"] for e in events]
        assert kinds.count("shop.charged") == 1 and kinds.count("run.resumed") == 1

    def test_a_replay_that_differs_fails_clearly(
        self, tmp_path: Path, openai_server: FakeOpenAI, serve: Serve
    ) -> None:
        record_file = tmp_path / "records.txt"
        record_file.touch()
        _, events = killed(
            serve(),
            lambda f: f.has("shop.begin"),
            "the first emit",
            start=lambda server: start_worker_run(server, "fickle", None),
        )
        kinds = [e["type"] for e in events]
        assert kinds == ["run.queued", "run.started", "shop.begin", "run.resumed", "run.failed"]
        error = events[-1]["data"]["error"]
        assert "non-deterministic agent: on resume it emitted 'shop.begin'" in error
        assert "(seq 3)" in error
