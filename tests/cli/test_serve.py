"""``culm serve``: with no application it serves the built-in examples; an application is
found in the current directory the way uvicorn finds one."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from typer.testing import CliRunner

import culm
from culm.cli import app
from tests.client.serving import Server, child_env, free_port, wait_until
from tests.local_model import require_local_model

MY_AGENTS = '''
import culm

app = culm.App()


@app.agent
async def shout(run: culm.RunContext, input: str) -> str:
    """Upper-cases its input."""
    return input.upper()
'''


def test_the_examples_by_default(tmp_path: Path) -> None:
    server = Server(tmp_path / "culm.db", app=None).start()
    try:
        env = {"CULM_URL": server.url}
        agents = CliRunner().invoke(app, ["agents", "--json"], env=env)
        names = {a["name"] for a in json.loads(agents.stdout)}
        assert {"countdown", "echo", "assistant", "clock"} <= names
        run = CliRunner().invoke(app, ["run", "countdown", "2", "--follow"], env=env)
        assert (run.exit_code, run.stdout) == (0, "liftoff\n")
        assert run.stderr.count("countdown.tick") == 2
        # the clock demo really calls its tool, and answers with the tool's result
        clock = CliRunner().invoke(app, ["run", "clock", "Time in Tokyo?", "-f"], env=env)
        assert clock.exit_code == 0, clock.output
        assert 'current_time({"timezone":"Asia/Tokyo"})' in clock.stderr
        called = next(line for line in clock.stderr.splitlines() if "✓ current_time" in line)
        result = called.split()[-1]
        assert result.endswith("+09:00") and clock.stdout == f"It is {result} there.\n"
        # the banner said where everything is
        log = server.log()
        for shown in (f"culm serving {server.url}", server.db_url, f"{server.url}/docs"):
            assert shown in log
    finally:
        server.stop()


def test_the_assistant_streams_its_answer(tmp_path: Path) -> None:
    require_local_model()
    server = Server(tmp_path / "culm.db", app=None).start()
    try:
        env = {"CULM_URL": server.url}
        question = "What is the capital of France?"
        run = CliRunner().invoke(app, ["run", "assistant", question, "-f"], env=env)
        assert run.exit_code == 0, run.output
        assert run.stdout.strip()  # the answer's text, streamed to stdout
        assert "completed in" in run.stderr
        assert "run_" in server.log() and "completed" in server.log()
    finally:
        server.stop()


def test_an_application_in_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "my_agents.py").write_text(MY_AGENTS)
    server = Server(tmp_path / "culm.db", app="my_agents:app", cwd=tmp_path).start()
    try:
        run = CliRunner().invoke(app, ["run", "shout", "hey", "-f"], env={"CULM_URL": server.url})
        assert (run.exit_code, run.stdout) == (0, "HEY\n")
    finally:
        server.stop()


@contextmanager
def logging_server(tmp_path: Path, *options: str) -> Iterator[tuple[str, list[str]]]:
    """``culm serve OPTIONS`` on a free port: its URL, and once it stopped (SIGTERM) the
    lines it wrote on stderr."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "--port", str(port), "--database-url", f"sqlite:///{tmp_path}/culm.db"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "culm", *args, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    lines: list[str] = []
    try:
        wait_until(lambda: _healthy(url) or proc.poll() is not None, 30, f"the server at {url}")
        assert proc.poll() is None, "the server exited"
        yield url, lines
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        lines.extend(line for line in err.decode().splitlines() if line.strip())


def test_json_logs(tmp_path: Path) -> None:
    """``--log-format json``: every line on stderr is a JSON object; a request and a run's
    state changes each make one."""
    with logging_server(tmp_path, "--log-format", "json") as (url, err):
        run = CliRunner().invoke(app, ["run", "echo", "hi", "-f"], env={"CULM_URL": url})
        assert run.exit_code == 0
        long = CliRunner().invoke(app, ["run", "countdown", "100000"], env={"CULM_URL": url})
        long_id = long.stdout.strip()
        with culm.Client(url) as client:
            wait_until(lambda: client.get_run(long_id)["status"] == "running", 30)
    lines = [json.loads(line) for line in err]
    assert lines[0]["message"] == f"culm serving {url}"
    requests = [line for line in lines if line["logger"] == "culm.access"]
    assert any((r["method"], r["path"], r["status"]) == ("POST", "/v1/runs", 201) for r in requests)
    states = [line["status"] for line in lines if line["logger"] == "culm.runs"]
    assert states[:3] == ["queued", "started", "completed"]
    # the run the shutdown interrupted is logged as such, after the engine closed
    [last] = [line for line in lines if line.get("run_id") == long_id][-1:]
    assert (last["status"], last["level"]) == ("interrupted", "warning")


def test_a_failed_runs_traceback_is_logged_once(tmp_path: Path) -> None:
    """An agent that raises: its run's ``error`` is the message, its traceback is in the
    ``run.failed`` event and in exactly one log record, the run's ``failed`` line."""
    serving = logging_server(tmp_path, "tests.agents:app", "--log-format", "json")
    with serving as (url, err), culm.Client(url) as client:
        run = client.start_run("crash", "kaboom")
        assert client.wait(run["id"], timeout=30)["error"] == "RuntimeError: kaboom"
        [failed] = [e for e in client.events(run["id"]).data if e["type"] == "run.failed"]
    traceback = failed["data"]["traceback"]
    assert traceback.startswith("Traceback") and "RuntimeError: kaboom" in traceback
    lines = [json.loads(line) for line in err]
    [logged] = [line for line in lines if "Traceback" in json.dumps(line)]
    assert (logged["logger"], logged["level"]) == ("culm.runs", "error")
    assert (logged["run_id"], logged["status"]) == (run["id"], "failed")
    assert logged["traceback"] == traceback


def test_log_level_warning_keeps_only_what_went_wrong(tmp_path: Path) -> None:
    """``--log-level warning``: no access lines and no routine state changes; a failed run
    is still logged."""
    serving = logging_server(tmp_path, "tests.agents:app", "--log-level", "warning")
    with serving as (url, err), culm.Client(url) as client:
        fine = client.start_run("echo", "hi")
        assert client.wait(fine["id"], timeout=30)["status"] == "completed"
        crash = client.start_run("crash", "kaboom")
        assert client.wait(crash["id"], timeout=30)["status"] == "failed"
    assert err[0] == f"culm serving {url}"  # the banner is no log line: it always shows
    logged = [line for line in err if line[:2].isdigit()]  # "HH:MM:SS LEVEL message"
    assert logged, err
    assert all(line.split()[1] in ("WARNING", "ERROR") for line in logged), err
    assert not any(f" {fine['id']} " in line for line in logged), err
    assert any(f"run {crash['id']} failed: RuntimeError: kaboom" in line for line in logged)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
