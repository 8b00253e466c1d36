"""Which process executes a run, and whether that process is still alive.

A worker id names a host, a process id and that process's start time, so a process on the
same host can tell at once that an owner died (even when its pid was reused). Owners on
other hosts are judged by their lease alone. psutil reads the start time, on every system
it supports.
"""

from __future__ import annotations

import os
import socket
import uuid

import psutil


def _started(pid: int) -> str | None:
    """When process ``pid`` started (seconds since the epoch, as text), None if it has
    ended (a zombie has: it only waits to be reaped); ``-`` when the system will not say."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{process.create_time():.2f}"
    except psutil.NoSuchProcess:  # ZombieProcess included
        return None
    except (psutil.Error, OSError):  # no right to look: alive, as far as anyone can tell
        return "-"


_LIVE: set[str] = set()
"""Worker ids of the engines open in this process: several may share one pid."""


def new_worker_id() -> str:
    """A worker id for an engine of this process, unique even if the pid was used before
    and among several engines of one process; alive until ``release_worker_id``."""
    pid = os.getpid()
    worker_id = f"{socket.gethostname()}:{pid}:{_started(pid) or '-'}:{uuid.uuid4().hex[:8]}"
    _LIVE.add(worker_id)
    return worker_id


def release_worker_id(worker_id: str) -> None:
    """The engine that had ``worker_id`` closed: whatever it still owns is orphaned."""
    _LIVE.discard(worker_id)


def owner_is_dead(worker_id: str, me: str) -> bool:
    """True when ``worker_id`` names a process on this host that no longer runs."""
    if worker_id == me:
        return False
    try:
        host, pid_text, started, _ = worker_id.rsplit(":", 3)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname() or started == "-":
        return False
    if pid == os.getpid() and started == _started(pid):
        return worker_id not in _LIVE  # another engine of this process: open or closed
    if pid == os.getpid():
        return True  # an earlier process that had our pid
    current = _started(pid)
    return current is None or (current != "-" and current != started)
