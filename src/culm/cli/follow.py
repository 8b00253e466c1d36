"""Following a run from the command line, and what Ctrl-C does meanwhile."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import orjson

from culm.cli.app import RUN_EXIT_CODES, ExitCode, fail, stderr, stdout
from culm.cli.view import RunView

if TYPE_CHECKING:
    from culm.client import Client, RunInfo


def follow_json(client: Client, run_id: str) -> int:
    """Print every event as a line of JSON until the run ends; exit with its outcome."""
    outcome = ""
    for event in client.follow(run_id):
        sys.stdout.write(orjson.dumps(event).decode() + "\n")
        sys.stdout.flush()
        outcome = event["type"].removeprefix("run.")
    return RUN_EXIT_CODES.get(outcome, ExitCode.ERROR)


def follow_run(client: Client, run: RunInfo) -> int:
    """Stream ``run`` until it ends; Ctrl-C asks whether to cancel it or to detach.

    Across a server restart the stream resumes where it was and ends with the run's
    outcome; a server that does not come back is reported as such (exit 1).
    """
    from culm.client import ServerUnreachable

    view = RunView(run, stdout(), stderr())
    announce = f"following {run['id']} ({run['agent']}) on session {run['session_id']}"
    with view:
        while True:
            try:
                if announce:  # inside the try: from here on Ctrl-C asks
                    view.info.print(announce, style="dim")
                    announce = ""
                for event in client.follow(run["id"], after=view.last_seq):
                    view.show(event)
                return RUN_EXIT_CODES.get(view.status, ExitCode.ERROR)
            except ServerUnreachable as exc:
                view.pause()
                raise fail(
                    f"lost the server while following {run['id']}, and it did not come back: "
                    f"{exc.message}\n       The run's outcome is unknown here; once the server "
                    f"is up, see it with: culm status {run['id']}"
                ) from None
            except KeyboardInterrupt:
                view.pause()
                if not _ask_cancel(run["id"]):
                    stderr().print(
                        f"detached; {run['id']} goes on. Follow it again with: "
                        f"culm events {run['id']} --follow --after {view.last_seq}"
                    )
                    return ExitCode.DETACHED
                _cancel(client, run["id"])
                view.resume()


def _cancel(client: Client, run_id: str) -> None:
    """Cancel the run, or say it had already ended (its end is shown next either way)."""
    from culm.client import RunFinishedError

    ended = "had already ended ({}); nothing to cancel"
    status = client.get_run(run_id)["status"]
    if status in RUN_EXIT_CODES:
        stderr().print(f"{run_id} {ended.format(status)}")
        return
    try:
        client.cancel(run_id, reason="cancelled from the command line")
    except RunFinishedError as exc:
        stderr().print(f"{run_id} {ended.format(exc.status)}")


def _ask_cancel(run_id: str) -> bool:
    """Ask on the terminal; no answer (end of input, a second Ctrl-C) means detach."""
    err = stderr()
    while True:
        err.print(f"\n[c]ancel {run_id}, or [d]etach and leave it running? ", end="", markup=False)
        try:
            answer = sys.stdin.readline()
        except KeyboardInterrupt:
            return False
        if not answer:
            return False
        choice = answer.strip().lower()
        if choice in ("c", "cancel"):
            return True
        if choice in ("d", "detach"):
            return False
