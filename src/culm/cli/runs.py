"""Commands that talk to a server: agents, run, runs, status, events, cancel."""

from __future__ import annotations

import enum
import sys
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table
from rich.text import Text

from culm.cli.app import (
    ApiKey,
    ExitCode,
    Json,
    Url,
    command,
    connect,
    stderr,
    stdout,
)
from culm.cli.follow import follow_json, follow_run
from culm.cli.tree import tree_view
from culm.cli.view import compact, event_line, since, status_text, when

RunId = Annotated[str, typer.Argument(metavar="RUN", help="The run's id.")]


class Trigger(enum.StrEnum):
    http = "http"
    spawn = "spawn"
    schedule = "schedule"
    python = "python"


class IfBusy(enum.StrEnum):
    reject = "reject"
    enqueue = "enqueue"
    interrupt = "interrupt"
    steer = "steer"


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def parse_input(text: str | None) -> Any:
    """INPUT as JSON when it parses (``5``, ``{"n": 3}``, ``"5"``), else the string."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def plain(docstring: str | None) -> str:
    """A docstring's first paragraph as one line of plain text (no ``literal`` marks)."""
    paragraph = (docstring or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split()).replace("``", "")


@command()
def agents(url: Url = None, api_key: ApiKey = None, json: Json = False) -> None:
    """List the agents the server can run."""
    with connect(url, api_key) as client:
        found = client.agents()
    if json:
        print_json(found)
        return
    table = Table(box=None)
    table.add_column("AGENT", no_wrap=True)
    table.add_column("DESCRIPTION")
    table.add_column("INPUT", no_wrap=True)
    for agent in found:
        schema = agent["input_schema"]
        table.add_row(agent["name"], Text(plain(agent["description"])), compact(schema, 40))
    stdout().print(table)


@command()
def run(
    agent: Annotated[str, typer.Argument(help="The agent to run (see `culm agents`).")],
    input: Annotated[
        str | None, typer.Argument(help="Its input: JSON when it parses, else a string.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream the run until it ends.")
    ] = False,
    session: Annotated[
        str | None, typer.Option("--session", help="Run on this session (default: a new one).")
    ] = None,
    if_busy: Annotated[
        IfBusy | None,
        typer.Option(
            "--if-busy",
            help="When the session has an active run: reject (the default), enqueue behind "
            "it, interrupt it, or steer it (send the input to it as a message).",
        ),
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    json: Json = False,
) -> None:
    """Start a run; prints its id, or with --follow streams it and exits with its outcome
    (0 completed, 3 failed, 4 cancelled, 5 interrupted)."""
    with connect(url, api_key) as client:
        started = client.start_run(
            agent,
            parse_input(input),
            session_id=session,
            if_busy=if_busy.value if if_busy else None,
        )
        if follow and json:
            raise typer.Exit(follow_json(client, started["id"]))
        if not follow:
            if json:
                print_json(started)
            else:
                sys.stdout.write(started["id"] + "\n")
                stderr().print(
                    f"started {started['id']} ({agent}) on session {started['session_id']}; "
                    f"follow it with: culm events {started['id']} --follow",
                    style="dim",
                )
            return
        raise typer.Exit(follow_run(client, started))


@command()
def runs(
    status: Annotated[
        str | None, typer.Option("--status", help="Only runs in this status.")
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only runs of this agent.")] = None,
    session: Annotated[
        str | None, typer.Option("--session", help="Only runs on this session.")
    ] = None,
    trigger: Annotated[
        Trigger | None, typer.Option("--trigger", help="Only runs started this way.")
    ] = None,
    schedule: Annotated[
        str | None, typer.Option("--schedule", help="Only runs this schedule started.")
    ] = None,
    parent: Annotated[
        str | None, typer.Option("--parent", metavar="RUN", help="Only runs RUN spawned.")
    ] = None,
    waiting: Annotated[
        bool,
        typer.Option("--waiting", help="Only runs waiting for a person, with what they ask."),
    ] = False,
    limit: Annotated[int, typer.Option("--limit", help="At most this many.")] = 20,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue a listing.")] = None,
    tree: Annotated[
        str | None,
        typer.Option("--tree", metavar="RUN", help="Show RUN and every run spawned below it."),
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    json: Json = False,
) -> None:
    """List runs, newest first; or with --tree RUN, the tree of runs RUN spawned."""
    if tree is not None:
        with connect(url, api_key) as client:
            found = client.tree(tree)
        if json:
            print_json(found)
        else:
            stdout().print(tree_view(found))
        return
    with connect(url, api_key) as client:
        page = client.list_runs(
            status="waiting" if waiting else status,
            agent=agent,
            session_id=session,
            trigger=trigger.value if trigger else None,
            schedule_id=schedule,
            parent_run_id=parent,
            limit=limit,
            cursor=cursor,
        )
    if json:
        print_json(page.data)
        return
    if waiting:
        from culm.cli.people import waiting_table  # it builds on this module

        stdout().print(waiting_table(page.data))
        return
    table = Table(box=None)
    table.add_column("RUN", no_wrap=True)
    for name in ("AGENT", "STATUS", "ROUND", "LAST TOOL", "CREATED", "TRIGGER"):
        table.add_column(name)
    for r in page.data:
        tool = f"{r['last_tool']} ({r['last_tool_phase']})" if r["last_tool"] else ""
        table.add_row(
            r["id"],
            r["agent"],
            status_text(r["status"]),
            str(r["round"] or ""),
            tool,
            since(r["created_at"]),
            r["trigger"],
        )
    stdout().print(table)
    if page.next_cursor:
        stderr().print(f"more: culm runs --cursor {page.next_cursor}", style="dim")


@command()
def status(run_id: RunId, url: Url = None, api_key: ApiKey = None, json: Json = False) -> None:
    """Show a run's live state: status, round, last tool, usage, output or error."""
    with connect(url, api_key) as client:
        found = client.get_run(run_id)
    if json:
        print_json(found)
        return
    grid = Table.grid(padding=(0, 2))
    rows: list[tuple[str, str | Text]] = [
        ("run", found["id"]),
        ("agent", found["agent"]),
        ("status", status_text(found["status"])),
        ("session", found["session_id"]),
        ("trigger", found["trigger"]),
        ("created", when(found["created_at"])),
        ("started", when(found["started_at"])),
        (_ended_label(found["status"]), when(found["completed_at"])),
        ("round", str(found["round"])),
        ("last event", f"#{found['last_seq']} at {when(found['last_event_at'])}"),
    ]
    if found["parent_run_id"]:
        rows.append(("parent", found["parent_run_id"]))
    if found["last_tool"]:
        rows.append(("last tool", f"{found['last_tool']} ({found['last_tool_phase']})"))
    if found["usage"]:
        rows.append(("usage", compact(found["usage"])))
    rows.append(("input", compact(found["input"], 200)))
    if found["output"] is not None:
        rows.append(("output", compact(found["output"], 500)))
    if found["error"]:
        rows.append(("error", Text(found["error"], style="red")))
    if found.get("waiting"):
        from culm.cli.people import asked  # it builds on this module

        rows.append(("waiting for", asked(found.get("waiting"))))
    for name, value in rows:
        grid.add_row(Text(name, style="dim"), value)
    stdout().print(grid)


def _ended_label(status: str) -> str:
    """What the end time of a run is called: ``completed``, ``cancelled``... or ``ended``
    while it has not ended."""
    return status if status in ("completed", "failed", "cancelled", "interrupted") else "ended"


@command()
def events(
    run_id: RunId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep following until the run ends.")
    ] = False,
    after: Annotated[int, typer.Option("--after", help="Only events after this seq.")] = 0,
    url: Url = None,
    api_key: ApiKey = None,
    json: Annotated[bool, typer.Option("--json", help="One JSON event per line.")] = False,
) -> None:
    """Print a run's events (those stored so far, or with --follow all of them live)."""
    out = stdout()

    def emit(event: Any) -> None:
        if json:
            sys.stdout.write(orjson.dumps(event).decode() + "\n")
            sys.stdout.flush()
        else:
            out.print(event_line(event))

    with connect(url, api_key) as client:
        if follow:
            try:
                for event in client.follow(run_id, after=after):
                    emit(event)
            except KeyboardInterrupt:
                raise typer.Exit(ExitCode.DETACHED) from None
            return
        while True:
            page = client.events(run_id, after=after, limit=1000)
            for event in page.data:
                emit(event)
            if page.done or not page.data:
                return
            after = page.next_after


@command()
def cancel(
    run_id: RunId,
    reason: Annotated[str | None, typer.Option("--reason", help="Recorded with the run.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the run has ended.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Ask a run to stop (at its next safe point); cancelling twice is harmless."""
    with connect(url, api_key) as client:
        found = client.cancel(run_id, reason=reason)
        if wait:
            found = client.wait(run_id)
    if found["status"] == "cancelled":
        stdout().print(f"{run_id} cancelled")
    else:
        stdout().print(
            Text.assemble(f"{run_id} asked to stop; it is ", status_text(found["status"]))
        )
