"""Which process executes a run, and whether that process is still alive.

A worker id names a host, a process id and that process's start time, so a process on the
same host can tell at once that an owner died (even when its pid was reused). Owners on
other hosts are judged by their lease alone.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after it are plain
    return stat.rsplit(")", 1)[1].split()[19]


def new_worker_id() -> str:
    """A worker id for this process, unique even if the pid was used before."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '-'}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(worker_id: str, me: str) -> bool:
    """True when ``worker_id`` names a process on this host that no longer runs."""
    if worker_id == me:
        return False
    try:
        host, pid_text, ticks, _ = worker_id.rsplit(":", 3)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname() or ticks == "-":
        return False
    if pid == os.getpid():
        return True  # an earlier process that had our pid
    current = _start_ticks(pid)
    return current is None or current != ticks
