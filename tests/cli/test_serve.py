"""``culm serve``: with no application it serves the built-in examples; an application is
found in the current directory the way uvicorn finds one."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from culm.cli import app
from tests.client.serving import Server

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
        assert {"countdown", "echo"} <= {a["name"] for a in json.loads(agents.stdout)}
        run = CliRunner().invoke(app, ["run", "countdown", "2", "--follow"], env=env)
        assert (run.exit_code, run.stdout) == (0, "liftoff\n")
        assert run.stderr.count("countdown.tick") == 2
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
