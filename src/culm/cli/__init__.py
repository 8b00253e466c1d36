"""The ``culm`` command line: serve agents, start and follow runs, cancel them."""

from __future__ import annotations

# isort: off
# Commands are listed in the order they register: serving comes first.
from culm.cli import serve, runs, people, schedules, init, worker

# isort: on
from culm.cli.app import ExitCode, app, main

__all__ = ["ExitCode", "app", "init", "main", "people", "runs", "schedules", "serve", "worker"]
