"""Whether the process named by a worker id still runs: judged at once on this host (by
pid and start time, so a reused pid is no impostor), never for another host."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from culm.runtime.owners import new_worker_id, owner_is_dead, release_worker_id
from tests.client.serving import wait_until

HOST = socket.gethostname()


@pytest.fixture
def me() -> Iterator[str]:
    worker_id = new_worker_id()
    yield worker_id
    release_worker_id(worker_id)


def started(pid: int) -> str:
    return f"{psutil.Process(pid).create_time():.2f}"


def test_a_worker_id_names_this_host_pid_and_start(me: str) -> None:
    host, pid, start, _ = me.rsplit(":", 3)
    assert (host, int(pid), start) == (HOST, os.getpid(), started(os.getpid()))


def test_itself_is_alive(me: str) -> None:
    assert not owner_is_dead(me, me)


def test_another_engine_of_this_process_is_alive_until_released(me: str) -> None:
    other = new_worker_id()
    assert not owner_is_dead(other, me)
    release_worker_id(other)
    assert owner_is_dead(other, me)


def test_a_running_process_is_alive_and_an_ended_one_dead(me: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = f"{HOST}:{child.pid}:{started(child.pid)}:abcd1234"
        assert not owner_is_dead(owner, me)
        child.kill()
        child.wait()
        assert owner_is_dead(owner, me)
    finally:
        child.kill()
        child.wait()


def test_an_unreaped_process_is_dead(me: str) -> None:
    """Killed but not yet waited for (a zombie): it runs nothing any more."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = f"{HOST}:{child.pid}:{started(child.pid)}:abcd1234"
    child.kill()
    try:
        # ended, and not reaped yet by its parent (this process)
        wait_until(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 10)
        assert owner_is_dead(owner, me)
    finally:
        child.wait()


def test_a_reused_pid_is_not_the_owner(me: str) -> None:
    """The pid runs, but a process started at another time has it."""
    pid = os.getppid()
    assert owner_is_dead(f"{HOST}:{pid}:12.34:abcd1234", me)
    assert owner_is_dead(f"{HOST}:{os.getpid()}:12.34:abcd1234", me)  # even our own pid


@pytest.mark.parametrize(
    "owner",
    [
        "elsewhere:1:12.34:abcd1234",  # another host: its lease decides
        f"{HOST}:1:-:abcd1234",  # a start time nobody could read
        "not a worker id",
        f"{HOST}:pid:12.34:abcd1234",
    ],
    ids=["other-host", "unknown-start", "malformed", "bad-pid"],
)
def test_what_cannot_be_judged_here_is_not_dead(me: str, owner: str) -> None:
    assert not owner_is_dead(owner, me)
