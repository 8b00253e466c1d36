"""A real server whose model process dies: the model call fails (or is retried) with a
clear error, the server keeps serving, and the next run of that model works."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import culm
from tests.client.serving import Server, wait_until
from tests.local_model import require_local_model


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    require_local_model()
    server = Server(tmp_path / "culm.db", app="tests.llm.local_apps:app").start()
    yield server
    server.stop()


def model_processes(server: Server) -> list[psutil.Process]:
    """The model processes the server started (``python -m culm.llm.child``)."""
    assert server.proc is not None
    children = psutil.Process(server.proc.pid).children()
    return [c for c in children if "culm.llm.child" in c.cmdline()]


def kill_the_model_at_its_first_token(server: Server, client: culm.Client, run_id: str) -> int:
    """Follow the run; at its first streamed token, SIGKILL the model process (as the
    kernel's out-of-memory killer would). Returns the killed pid."""
    for event in client.follow(run_id):
        if event["type"] == "message.delta":
            [model] = model_processes(server)
            os.kill(model.pid, signal.SIGKILL)
            return model.pid
    raise AssertionError("the run ended before its first token")


def test_a_model_process_killed_mid_generation(server: Server) -> None:
    with culm.Client(server.url) as client:
        run = client.start_run("storyteller", "Tell me about a dragon.")
        killed = kill_the_model_at_its_first_token(server, client, run["id"])
        done = client.wait(run["id"], timeout=60)
        assert done["status"] == "failed"
        assert "local:smollm2: the model process killed by SIGKILL (out of memory?) during" in (
            done["error"] or ""
        )
        # the server never noticed beyond that run: it serves, and the model comes back
        assert server.proc is not None and server.proc.poll() is None
        again = client.start_run("brief", "Say hello.")
        assert client.wait(again["id"], timeout=60)["status"] == "completed"
        [model] = model_processes(server)
        assert model.pid != killed
        assert "killed by SIGKILL" in server.log()


def test_the_runs_in_flight_go_on(server: Server) -> None:
    """A run that needs no model, going on while the model process is killed, completes
    whole."""
    with culm.Client(server.url) as client:
        run = client.start_run("storyteller", "Tell me about a dragon.")
        for event in client.follow(run["id"]):
            if event["type"] == "message.delta":
                break
        ticking = client.start_run("countdown", 20)
        wait_until(lambda: client.events(ticking["id"]).data[-1]["type"] == "countdown.tick", 10)
        [model] = model_processes(server)
        os.kill(model.pid, signal.SIGKILL)
        assert client.wait(run["id"], timeout=60)["status"] == "failed"
        assert client.get_run(ticking["id"])["status"] == "running"  # in flight all along
        done = client.wait(ticking["id"], timeout=60)
        assert (done["status"], done["output"]) == ("completed", "liftoff")
        events = client.events(ticking["id"]).data
        ticks = [e["data"]["left"] for e in events if e["type"] == "countdown.tick"]
        assert ticks == list(range(20, 0, -1))


def test_a_retried_call_completes_the_run(server: Server) -> None:
    with culm.Client(server.url) as client:
        run = client.start_run("patient_storyteller", "Tell me about a dragon.")
        kill_the_model_at_its_first_token(server, client, run["id"])
        done = client.wait(run["id"], timeout=90)
        assert done["status"] == "completed", done["error"]
        events = list(client.follow(run["id"]))
        resets = [e for e in events if e["type"] == "message.delta" and e["data"].get("reset")]
        assert len(resets) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["shutdown", "killed"])
def test_the_model_process_goes_with_the_server(server: Server, sig: int) -> None:
    with culm.Client(server.url) as client:
        run = client.start_run("brief", "Hi")
        assert client.wait(run["id"], timeout=60)["status"] == "completed"
    [model] = model_processes(server)
    server.stop(sig)  # killed, it cannot stop its children: they notice by themselves
    wait_until(
        lambda: not model.is_running() or model.status() == psutil.STATUS_ZOMBIE,
        10,
        "the model process to exit after its server was killed",
    )
