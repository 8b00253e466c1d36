"""Whether the process named by a worker id still runs: a pid alone is not enough, since
the system hands a dead process's pid to a new one."""

from __future__ import annotations

import os
import socket
import subprocess

from culm.runtime.owners import _start_ticks, new_worker_id, owner_is_dead, release_worker_id


def _worker(pid: int, ticks: str) -> str:
    return f"{socket.gethostname()}:{pid}:{ticks}:0badc0de"


class TestOwnerIsDead:
    def test_another_live_process(self) -> None:
        me = new_worker_id()
        try:
            with subprocess.Popen(["sleep", "30"]) as other:
                ticks = _start_ticks(other.pid)
                assert ticks is not None
                assert not owner_is_dead(_worker(other.pid, ticks), me)
                # the same pid, started at another time: an earlier process that had it
                assert owner_is_dead(_worker(other.pid, str(int(ticks) - 1)), me)
                other.kill()
                other.wait()
                assert owner_is_dead(_worker(other.pid, ticks), me)
        finally:
            release_worker_id(me)

    def test_a_reused_pid_of_this_process(self) -> None:
        me = new_worker_id()
        try:
            ticks = _start_ticks(os.getpid())
            assert ticks is not None
            earlier = _worker(os.getpid(), str(int(ticks) - 1))
            assert owner_is_dead(earlier, me)
        finally:
            release_worker_id(me)

    def test_other_engines_of_this_process(self) -> None:
        me = new_worker_id()
        other = new_worker_id()
        try:
            assert not owner_is_dead(other, me)  # open: alive, though not this engine
            release_worker_id(other)
            assert owner_is_dead(other, me)  # closed: what it owned is orphaned
            assert not owner_is_dead(me, me)
        finally:
            release_worker_id(me)
            release_worker_id(other)

    def test_another_host_is_judged_by_its_lease(self) -> None:
        me = new_worker_id()
        try:
            assert not owner_is_dead(f"elsewhere:{os.getpid()}:1:0badc0de", me)
        finally:
            release_worker_id(me)
