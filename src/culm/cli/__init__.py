"""The ``culm`` command line: serve agents, start and follow runs, cancel them."""

from __future__ import annotations

import sys

try:
    # isort: off
    # Commands are listed in the order they register: serving comes first.
    from culm.cli import serve, runs, people, schedules, init, worker

    # isort: on
    from culm.cli.app import ExitCode, app, main
except KeyboardInterrupt:
    # Python imports this package before it runs ``python -m culm.cli``, with argv[0] set
    # to "-m" meanwhile (as documented): a Ctrl-C then is the command's, and ends it as
    # quietly as ``culm``'s own does. Imported by a program, the Ctrl-C is the program's.
    if sys.argv[:1] != ["-m"]:
        raise
    sys.stderr.write("\n")
    raise SystemExit(130) from None

__all__ = ["ExitCode", "app", "init", "main", "people", "runs", "schedules", "serve", "worker"]
