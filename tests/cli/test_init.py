"""``culm init`` writes an application that ``culm serve`` runs as it is, with passing tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from culm.cli import app
from tests.client.serving import Server, child_env


def test_the_example_app_serves_and_its_tests_pass(tmp_path: Path) -> None:
    project = tmp_path / "myproject"
    written = CliRunner().invoke(app, ["init", str(project)])
    assert written.exit_code == 0, written.output
    assert {p.name for p in project.iterdir()} == {"agents.py", "test_agents.py", "pytest.ini"}

    server = Server(tmp_path / "culm.db", app="agents:app", cwd=project).start()
    try:
        run = CliRunner().invoke(app, ["run", "hello", "Ada", "-f"], env={"CULM_URL": server.url})
        assert (run.exit_code, run.stdout) == (0, "Hello, Ada!\n")
    finally:
        server.stop()

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout


def test_it_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "agents.py").write_text("# mine\n")
    result = CliRunner().invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 1
    assert "agents.py already exist(s)" in result.stderr
    assert (tmp_path / "agents.py").read_text() == "# mine\n"
    assert not (tmp_path / "test_agents.py").exists()
