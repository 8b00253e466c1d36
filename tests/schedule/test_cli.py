"""The Python client's schedule calls and ``culm schedules``, against a real ``culm serve``."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import typer
from typer.testing import CliRunner, Result

import culm
from culm.cli import app
from culm.cli.schedules import parse_duration, parse_time
from culm.client.schedules import ScheduleCalls
from tests.client.serving import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("schedules-cli") / "culm.db").start()
    yield running
    running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[culm.Client]:
    with culm.Client(server.url) as client:
        yield client


def cli(server: Server, *args: str) -> Result:
    return CliRunner().invoke(app, ["schedules", *args], env={"CULM_URL": server.url})


class TestClient:
    """Both clients have every schedule call, with the same signatures."""

    def test_every_call_has_a_blocking_twin(self) -> None:
        names = [n for n in vars(ScheduleCalls) if not n.startswith("_")]
        assert len(names) == 9
        for name in names:
            blocking = inspect.signature(getattr(culm.Client, name))
            awaited = inspect.signature(getattr(culm.AsyncClient, name))
            assert blocking == awaited, name

    def test_blocking_calls(self, client: culm.Client) -> None:
        start = datetime.now(UTC) + timedelta(days=1)
        created = client.create_schedule("echo", "hi", every=3600, start_at=start, name="hourly")
        sid = created["id"]
        assert created["next_fire_at"] == start.isoformat().replace("+00:00", "Z")
        assert client.get_schedule(sid) == created
        assert sid in [s["id"] for s in client.list_schedules().data]
        assert client.update_schedule(sid, input="there")["input"] == "there"
        assert client.pause_schedule(sid)["paused"] is True
        firing = client.trigger_schedule(sid)
        assert (firing["outcome"], firing["manual"]) == ("started", True)
        assert firing["run_id"] is not None
        assert client.wait(firing["run_id"], timeout=20)["output"] == "there"
        assert client.resume_schedule(sid)["paused"] is False
        assert [f["id"] for f in client.schedule_firings(sid).data] == [firing["id"]]
        client.delete_schedule(sid)
        with pytest.raises(culm.NotFound):
            client.get_schedule(sid)
        with pytest.raises(culm.InvalidInput, match="cron expression"):
            client.create_schedule("echo", "x", cron="whenever")

    async def test_async_calls(self, server: Server) -> None:
        async with culm.AsyncClient(server.url) as client:
            created = await client.create_schedule(
                "echo", "x", cron="@daily", timezone="Asia/Tokyo"
            )
            assert created["next_fire_at"] is not None and created["next_fire_at"].endswith("Z")
            firing = await client.trigger_schedule(created["id"])
            assert firing["outcome"] == "started"
            await client.delete_schedule(created["id"])


class TestCommands:
    """``culm schedules add|ls|show|pause|resume|trigger|rm``."""

    def test_a_schedule_through_the_cli(self, server: Server) -> None:
        added = cli(
            server, "add", "echo", "hi", "--cron", "0 9 * * 1-5", "--tz", "Europe/Paris",
            "--name", "mornings",
        )  # fmt: skip
        assert added.exit_code == 0, added.output
        sid = added.stdout.strip()
        assert sid.startswith("sch_")

        listed = cli(server, "ls")
        assert listed.exit_code == 0, listed.output
        row = next(line for line in listed.stdout.splitlines() if sid in line)
        assert "cron 0 9 * * 1-5 (Europe/Paris)" in row and "active" in row

        assert cli(server, "pause", sid).stdout.strip() == f"{sid} paused"
        assert "paused" in next(
            line for line in cli(server, "ls").stdout.splitlines() if sid in line
        )
        assert cli(server, "resume", sid).stdout.startswith(f"{sid} resumed; next fire")

        fired = cli(server, "trigger", sid, "--follow")
        assert fired.exit_code == 0, fired.output
        run_id = fired.stdout.splitlines()[0]
        assert run_id.startswith("run_")

        shown = cli(server, "show", sid, "--json")
        details = orjson.loads(shown.stdout)
        assert (details["name"], details["counts"]["started"]) == ("mornings", 1)
        assert [f["run_id"] for f in details["firings"]] == [run_id]
        text = cli(server, "show", sid).stdout
        assert "mornings" in text and run_id in text and "started" in text

        assert cli(server, "rm", sid).stdout.strip() == f"{sid} deleted"
        gone = cli(server, "show", sid)
        assert gone.exit_code == 1 and "no schedule" in gone.output

    def test_every_and_at(self, server: Server, client: culm.Client) -> None:
        every = cli(server, "add", "echo", "x", "--every", "10m", "--json")
        assert orjson.loads(every.stdout)["every"] == 600
        once = cli(server, "add", "echo", "x", "--at", "+1h", "--json")
        assert orjson.loads(once.stdout)["at"] is not None
        for created in (every, once):
            client.delete_schedule(orjson.loads(created.stdout)["id"])

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--cron", "whenever"], "cron expression"),
            (["--cron", "0 9 * * *", "--tz", "Mars/Olympus"], "time zone"),
            (["--every", "often"], "not a duration"),
            (["--at", "tomorrow"], "not a time"),
            (["--every", "60", "--start", "2030-01-02", "--end", "2030-01-01"], "before"),
        ],
    )
    def test_mistakes_are_one_line(self, server: Server, args: list[str], message: str) -> None:
        result = cli(server, "add", "echo", "x", *args)
        assert result.exit_code == 1, result.output
        assert message in result.output and "Traceback" not in result.output


class TestParsing:
    """Durations and times as people type them."""

    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("90", 90), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("2d", 172800), ("1w", 604800)],
    )
    def test_durations(self, text: str, seconds: float) -> None:
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["", "ten", "10x", "m10", "1h 30m"])
    def test_bad_durations(self, text: str) -> None:
        with pytest.raises(typer.Exit):
            parse_duration(text)

    def test_times(self) -> None:
        assert parse_time("2030-01-07T09:00", "Europe/Paris") == "2030-01-07T09:00:00+01:00"
        assert parse_time("2030-07-07T09:00", "Europe/Paris") == "2030-07-07T09:00:00+02:00"
        assert parse_time("2030-01-07T09:00", None) == "2030-01-07T09:00:00+00:00"
        assert parse_time("2030-01-07T09:00-05:00", "Europe/Paris") == "2030-01-07T09:00:00-05:00"
        ahead = datetime.fromisoformat(parse_time("+1h", None)) - datetime.now(UTC)
        assert timedelta(minutes=59) < ahead <= timedelta(hours=1)
