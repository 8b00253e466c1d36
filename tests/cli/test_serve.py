"""``culm serve``: with no application it serves the built-in examples; an application is
found in the current directory the way uvicorn finds one."""

from __future__ import annotations

import json
import subprocess
import sys
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


def test_json_logs(tmp_path: Path) -> None:
    """``--log-format json``: every line on stderr is a JSON object; a request and a run's
    state changes each make one."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "--port", str(port), "--database-url", f"sqlite:///{tmp_path}/culm.db"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "culm", *args, "--log-format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    try:
        wait_until(lambda: _healthy(url), 30, f"the server at {url}")
        run = CliRunner().invoke(app, ["run", "echo", "hi", "-f"], env={"CULM_URL": url})
        assert run.exit_code == 0
        long = CliRunner().invoke(app, ["run", "countdown", "100000"], env={"CULM_URL": url})
        long_id = long.stdout.strip()
        with culm.Client(url) as client:
            wait_until(lambda: client.get_run(long_id)["status"] == "running", 30)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert lines[0]["message"] == f"culm serving {url}"
    requests = [line for line in lines if line["logger"] == "culm.access"]
    assert any((r["method"], r["path"], r["status"]) == ("POST", "/v1/runs", 201) for r in requests)
    states = [line["status"] for line in lines if line["logger"] == "culm.runs"]
    assert states[:3] == ["queued", "started", "completed"]
    # the run the shutdown interrupted is logged as such, after the engine closed
    [last] = [line for line in lines if line.get("run_id") == long_id][-1:]
    assert (last["status"], last["level"]) == ("interrupted", "warning")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
