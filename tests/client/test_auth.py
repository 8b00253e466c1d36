"""API keys: the client sends them, the CLI passes them on, a wrong one is ``AuthError``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

import culm
from culm.cli import ExitCode, app
from culm.client import AuthError
from tests.client.serving import DEADLINE, Server


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``culm serve --api-key ka=alpha --api-key kb=beta``."""
    server = Server(tmp_path_factory.mktemp("auth") / "culm.db", keys=["ka=alpha", "kb=beta"])
    yield server.start()
    server.stop()


class TestKeys:
    """Each key is a tenant; without a valid key nothing is served."""

    @pytest.mark.parametrize("key", [None, "wrong"])
    def test_missing_or_unknown_key(
        self, keyed: Server, key: str | None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("CULM_API_KEY", raising=False)
        with culm.Client(keyed.url, api_key=key) as client, pytest.raises(AuthError) as caught:
            client.agents()
        assert caught.value.status_code == 401

    def test_a_tenant_sees_only_its_own(self, keyed: Server) -> None:
        with culm.Client(keyed.url, api_key="ka") as alpha:
            run = alpha.start_run("echo", "mine")
            assert alpha.wait(run["id"], timeout=DEADLINE)["output"] == "mine"
        with culm.Client(keyed.url, api_key="kb") as beta, pytest.raises(culm.NotFound):
            beta.get_run(run["id"])

    def test_key_from_the_environment(self, keyed: Server, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CULM_API_KEY", "ka")
        with culm.Client(keyed.url) as client:
            assert client.agents()

    def test_cli(self, keyed: Server) -> None:
        runner = CliRunner()
        env = {"CULM_URL": keyed.url, "CULM_API_KEY": None}
        ok = runner.invoke(app, ["run", "echo", "hi", "-f", "--api-key", "ka"], env=env)
        assert (ok.exit_code, ok.stdout) == (0, "hi\n")
        refused = runner.invoke(app, ["runs", "--api-key", "nope"], env=env)
        assert refused.exit_code == ExitCode.ERROR
        assert refused.stderr.startswith("error: ")
        from_env = runner.invoke(app, ["agents"], env={**env, "CULM_API_KEY": "kb"})
        assert from_env.exit_code == 0
