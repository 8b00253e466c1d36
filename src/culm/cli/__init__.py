"""The ``culm`` command line: serve agents, start and follow runs, cancel them."""

from __future__ import annotations

from culm.cli import runs, serve
from culm.cli.app import ExitCode, app, main

__all__ = ["ExitCode", "app", "main", "runs", "serve"]
