"""What a new user meets first: ``culm serve`` refusing to start says why in one line with
the fix, and the command itself (``--version``, ``python -m culm``, ``--help``) starts fast
without the server's code."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from culm.cli import ExitCode
from tests.client.serving import DEADLINE, child_env, free_port

BROKEN_APP = """import culm

app = culm.App(
"""


WITHOUT_PRIVILEGES = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
"""Root writes whatever the file modes say: as root, a command that must meet them runs
with no capabilities, as any other user would."""


def culm(
    *args: str, cwd: Path | None = None, as_user: bool = False
) -> subprocess.CompletedProcess[str]:
    """``culm ARGS...`` as a real process; its exit code and output. ``as_user``: bound by
    file permissions even when the tests run as root."""
    prefix: list[str] = []
    if as_user and os.geteuid() == 0:
        assert shutil.which(WITHOUT_PRIVILEGES[0]), "setpriv (util-linux) is needed as root"
        prefix = WITHOUT_PRIVILEGES
    return subprocess.run(
        [*prefix, sys.executable, "-m", "culm", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=child_env(),
        cwd=cwd,
    )


def culm_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``culm ARGS...`` in a Python where ``module`` is not installed."""
    script = (
        f"import sys; sys.modules[{module!r}] = None; sys.argv = ['culm', *{args!r}]; "
        "from culm.__main__ import main; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=child_env(),
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error ``result`` printed, checked to be one line and no traceback."""
    assert result.returncode == ExitCode.ERROR, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


class TestServeStartupErrors:
    """Each start-up error is one line saying what to do, and nothing starts."""

    def test_port_out_of_range(self, tmp_path: Path) -> None:
        db = tmp_path / "culm.db"
        line = one_line_error(culm("serve", "--port", "73538", "--database-url", f"sqlite:///{db}"))
        assert "73538 is out of range" in line and "1 to 65535" in line
        assert not db.exists()

    def test_port_in_use_is_found_before_the_database_is_opened(self, tmp_path: Path) -> None:
        db = tmp_path / "culm.db"
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = taken.getsockname()[1]
            result = culm("serve", "--port", str(port), "--database-url", f"sqlite:///{db}")
        line = one_line_error(result)
        assert f"port {port} on 127.0.0.1 is already in use" in line
        assert "--port" in line
        assert not db.exists()

    def test_unopenable_database_path(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path}/missing/culm.db"
        line = one_line_error(culm("serve", "--port", str(free_port()), "--database-url", url))
        assert "does not exist" in line and str(tmp_path / "missing") in line

    def test_a_database_that_is_not_one(self, tmp_path: Path) -> None:
        junk = tmp_path / "junk.db"
        junk.write_bytes(b"this is not a database" * 100)
        url = f"sqlite:///{junk}"
        line = one_line_error(culm("serve", "--port", str(free_port()), "--database-url", url))
        assert f"cannot open the database {junk}" in line

    def test_unsupported_database_url(self) -> None:
        url = "mysql://localhost/culm"
        line = one_line_error(culm("serve", "--port", str(free_port()), "--database-url", url))
        assert "unsupported database URL" in line and "sqlite:///" in line

    def test_an_unreachable_postgresql(self) -> None:
        url = "postgresql://127.0.0.1:1/x"
        line = one_line_error(culm("serve", "--port", str(free_port()), "--database-url", url))
        assert f"cannot reach the database {url}" in line and "--database-url" in line

    def test_postgresql_without_its_driver(self) -> None:
        url = "postgresql://127.0.0.1:1/x"
        result = culm_without("asyncpg", "serve", "--port", str(free_port()), "--database-url", url)
        line = one_line_error(result)
        assert "asyncpg" in line and "pip install 'culm[postgres]'" in line

    def test_a_password_is_not_shown(self) -> None:
        url = "postgresql://me:secret@127.0.0.1:1/x"
        line = one_line_error(culm("serve", "--port", str(free_port()), "--database-url", url))
        assert "secret" not in line and "postgresql://me:***@127.0.0.1:1/x" in line

    def test_a_database_that_cannot_be_migrated(self, tmp_path: Path) -> None:
        """A database whose schema this culm does not know (made by a newer one, say)."""
        db = tmp_path / "newer.db"
        with sqlite3.connect(db) as made:
            made.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
            made.execute("INSERT INTO alembic_version VALUES ('f00dfeedbeef')")
        url = f"sqlite:///{db}"
        line = one_line_error(culm("serve", "--port", str(free_port()), "--database-url", url))
        assert f"cannot migrate the database {url}" in line and "f00dfeedbeef" in line

    def test_a_read_only_database_file(self, tmp_path: Path) -> None:
        """SQLite would open it read-only and fail at the first write: it is refused."""
        db = tmp_path / "culm.db"
        sqlite3.connect(db).close()
        db.chmod(0o444)
        url = f"sqlite:///{db}"
        line = one_line_error(
            culm("serve", "--port", str(free_port()), "--database-url", url, as_user=True)
        )
        assert f"the database {db} is read-only" in line and "chmod" in line

    def test_help_offers_only_what_works(self) -> None:
        help = culm("serve", "--help").stdout
        assert "sqlite:///PATH" in help and "postgresql://" in help
        assert "mysql" not in help

    def test_a_worker_metrics_port_in_use_is_found_before_the_database_is_opened(
        self, tmp_path: Path
    ) -> None:
        db = tmp_path / "culm.db"
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = str(taken.getsockname()[1])
            app, url = "tests.agents:app", f"sqlite:///{db}"
            result = culm("worker", app, "--metrics-port", port, "--database-url", url)
        line = one_line_error(result)
        assert f"cannot serve metrics on 127.0.0.1:{port}" in line and "in use" in line
        assert not db.exists()

    def test_a_worker_on_an_unreachable_postgresql(self) -> None:
        url = "postgresql://127.0.0.1:1/x"
        line = one_line_error(culm("worker", "tests.agents:app", "--database-url", url))
        assert f"cannot reach the database {url}" in line and "--database-url" in line

    def test_a_worker_on_a_database_it_cannot_open(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'nowhere' / 'culm.db'}"
        line = one_line_error(culm("worker", "tests.agents:app", "--database-url", url))
        assert f"directory {tmp_path / 'nowhere'} does not exist" in line

    def test_a_role_serve_does_not_have(self) -> None:
        line = one_line_error(culm("serve", "--port", str(free_port()), "--role", "worker"))
        assert "--role 'worker'" in line and "culm worker" in line

    def test_an_app_with_a_syntax_error_names_file_and_line(self, tmp_path: Path) -> None:
        (tmp_path / "broken.py").write_text(BROKEN_APP)
        result = culm("serve", "broken:app", "--port", str(free_port()), cwd=tmp_path)
        line = one_line_error(result)
        assert f"syntax error at {tmp_path / 'broken.py'}:3" in line

    def test_an_app_that_raises_names_where(self, tmp_path: Path) -> None:
        (tmp_path / "raising.py").write_text("import culm\n\nraise RuntimeError('no config')\n")
        result = culm("serve", "raising:app", "--port", str(free_port()), cwd=tmp_path)
        line = one_line_error(result)
        assert "RuntimeError: no config" in line and "raising.py:3" in line


class TestTheCommand:
    """``culm`` itself: version, module entry point, completion, and a fast start."""

    def test_version(self) -> None:
        result = culm("--version")
        assert result.returncode == 0
        assert result.stdout.startswith("culm ") and result.stdout.strip().split()[1][0].isdigit()

    def test_python_dash_m_culm(self) -> None:
        result = culm("--help")
        assert result.returncode == 0
        for command in ("serve", "run", "runs", "init", "agents"):
            assert command in result.stdout

    def test_shell_completion_is_offered(self) -> None:
        assert "--install-completion" in culm("--help").stdout

    @pytest.mark.parametrize("module", ["culm.cli", "culm"])
    def test_the_cli_imports_no_server_code(self, module: str) -> None:
        heavy = ("culm.engine", "culm.api", "culm.store", "sqlalchemy", "fastapi", "uvicorn")
        probe = (
            f"import sys, {module}; "
            f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=DEADLINE
        )
        assert result.stdout.strip() == "[]", result.stderr


INTERRUPT_AT_TYPER = """
import pathlib, sys


class CtrlC:
    \"\"\"Interrupts the first ``import typer``, as a Ctrl-C at that moment would.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == "typer":
            sys.meta_path.remove(self)
            pathlib.Path(__file__).with_name("interrupted").touch()
            raise KeyboardInterrupt
        return None


sys.meta_path.insert(0, CtrlC())
"""


def test_listing_runs_loads_no_server_code() -> None:
    """``culm runs`` (which fails here: nothing listens) imports only the client."""
    heavy = ("culm.engine", "culm.api", "culm.store", "sqlalchemy", "fastapi", "uvicorn")
    probe = (
        "import sys\n"
        "sys.argv = ['culm', 'runs', '--url', 'http://127.0.0.1:1']\n"
        "from culm.__main__ import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    print(exc.code)\n"
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=child_env(),
    )
    assert "culm serve" in result.stderr  # it really ran, as far as the network
    assert result.stdout.split("\n")[:2] == [str(int(ExitCode.ERROR)), "[]"], result.stdout


class TestCtrlC:
    """Ctrl-C while ``culm serve`` starts or serves stops it without a traceback."""

    @pytest.mark.parametrize("command", ["culm", "python -m culm", "python -m culm.cli"])
    def test_while_the_command_imports(self, tmp_path: Path, command: str) -> None:
        """Deterministic: a finder raises ``KeyboardInterrupt`` at ``import typer``, loaded
        through ``sitecustomize`` before the command starts."""
        (tmp_path / "sitecustomize.py").write_text(INTERRUPT_AT_TYPER)
        argv = {
            "culm": [str(Path(sys.executable).with_name("culm"))],
            "python -m culm": [sys.executable, "-m", "culm"],
            "python -m culm.cli": [sys.executable, "-m", "culm.cli"],
        }[command]
        result = subprocess.run(
            [*argv, "--help"],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            env=child_env(PYTHONPATH=str(tmp_path)),
        )
        assert (tmp_path / "interrupted").exists()  # the interrupt came, during the imports
        assert result.returncode == 130, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""

    @pytest.mark.parametrize("when", ["importing", "serving"])
    def test_no_traceback(self, tmp_path: Path, when: str) -> None:
        args = ["serve", "--port", str(free_port()), "--database-url", f"sqlite:///{tmp_path}/c.db"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "culm", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        output = b""
        if when == "serving":
            assert proc.stderr is not None
            while b"culm serving" not in output:  # the banner: the server is up
                line = proc.stderr.readline()
                assert line, "the server exited before its banner"
                output += line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=DEADLINE)
        # 130 from culm itself; -SIGINT when the signal came before Python was up
        assert proc.returncode in (0, 130, -signal.SIGINT), err
        assert b"Traceback" not in output + out + err


def test_the_banner_names_what_is_there() -> None:
    from culm.cli.serve import EXAMPLES, banner
    from culm.config import Settings
    from culm.examples import app as examples

    settings = Settings(database_url="sqlite:///x.db")
    url = "http://127.0.0.1:8000"
    plain = banner(url, settings, examples, EXAMPLES, ["/v1/runs", "/docs"])
    assert plain.splitlines() == [
        f"culm serving {url}",
        "  database  sqlite:///x.db",
        "  agents    assistant, clock, countdown, echo  (built-in examples)",
        f"  API docs  {url}/docs",
        "  try       culm run countdown 3 --follow",
    ]
    # the routes a server with the dashboard has: the page at /, its files below
    routes = ["/v1/runs", "/", "/dashboard/{path:path}"]
    with_ui = banner(url, settings, examples, EXAMPLES, routes)
    assert f"  dashboard {url}/" in with_ui.splitlines()


def test_model_providers_are_imported_in_the_background_when_serving() -> None:
    """The openai SDK's second of import happens beside start-up, not in the first run."""
    probe = (
        "import sys; from culm.cli.serve import preload_providers; "
        "from culm.examples import app; import culm; "
        "assert 'openai' not in sys.modules; "
        "thread = preload_providers(app); thread.join(60); "
        "print('openai' in sys.modules, preload_providers(culm.App()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=DEADLINE
    )
    assert result.stdout.split() == ["True", "None"], result.stderr
