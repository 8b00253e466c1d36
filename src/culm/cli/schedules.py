"""``culm schedules``: add, ls, show, pause, resume, trigger, rm."""

from __future__ import annotations

import enum
import functools
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import typer
from rich.table import Table
from rich.text import Text

from culm.cli.app import ApiKey, Json, Url, app, connect, expected_errors, fail, stderr, stdout
from culm.cli.follow import follow_run
from culm.cli.runs import parse_input, print_json
from culm.cli.view import compact, status_text, when

if TYPE_CHECKING:
    from culm.client.schedules import FiringInfo, ScheduleInfo

P = ParamSpec("P")
R = TypeVar("R")

schedules = typer.Typer(
    name="schedules",
    help="Runs started by the clock: cron in a time zone, every N, or once.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(schedules, name="schedules")

ScheduleId = Annotated[str, typer.Argument(metavar="SCHEDULE", help="The schedule's id.")]


class Overlap(enum.StrEnum):
    allow = "allow"
    skip = "skip"
    enqueue = "enqueue"
    cancel_previous = "cancel_previous"


class Misfire(enum.StrEnum):
    run_once = "run_once"
    skip = "skip"
    catch_up = "catch_up"


def _command(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Register a ``culm schedules`` command whose expected errors print as one line."""

    def register(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with expected_errors():
                return fn(*args, **kwargs)

        schedules.command(name)(wrapper)
        return wrapper

    return register


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1h30m``, ``2d`` as seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise fail(f"not a duration: {text!r} (try 90, 90s, 10m, 1h30m or 2d)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_time(text: str, tz: str | None) -> str:
    """ISO 8601, read in ``tz`` (else UTC) when it has no offset, or ``+DURATION`` from now;
    as ISO 8601 with an offset, which is what the server takes."""
    if text.startswith("+"):
        return datetime.fromtimestamp(time.time() + parse_duration(text[1:]), UTC).isoformat()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise fail(
            f"not a time: {text!r} (try 2030-01-07T09:00, with an offset, or +10m)"
        ) from None
    if value.tzinfo is None:
        try:
            value = value.replace(tzinfo=ZoneInfo(tz) if tz else UTC)
        except (ZoneInfoNotFoundError, ValueError):
            raise fail(f"unknown time zone {tz!r}") from None
    return value.isoformat()


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def cadence(s: ScheduleInfo) -> str:
    """How a schedule fires, in a few words."""
    if s["cron"] is not None:
        return f"cron {s['cron']} ({s['timezone']})"
    if s["every"] is not None:
        return f"every {_duration_text(s['every'])}"
    return f"at {when(s['at'])}"


def until(iso: str | None) -> str:
    """How far ahead an ISO 8601 time is: ``in 42s``, ``in 5m``...; ``-`` for none."""
    if not iso:
        return "-"
    seconds = datetime.fromisoformat(iso).timestamp() - time.time()
    if seconds < 0:
        return "due"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"in {int(seconds // size)}{unit}"
    return f"in {int(seconds)}s"


def state(s: ScheduleInfo) -> Text:
    if s["paused"]:
        return Text("paused", style="yellow")
    if s["next_fire_at"] is None:
        return Text("done", style="dim")
    return Text("active", style="green")


_OUTCOME_STYLES = {
    "started": "green",
    "skipped_overlap": "yellow",
    "missed": "magenta",
    "failed_to_start": "red",
    "waiting": "cyan",
}


def outcome(f: FiringInfo) -> Text:
    label = f["outcome"] + (f" ({f['count']})" if f["count"] > 1 else "")
    return Text(label, style=_OUTCOME_STYLES.get(f["outcome"], ""))


@_command("add")
def add(
    agent: Annotated[str, typer.Argument(help="The agent to run (see `culm agents`).")],
    input: Annotated[
        str | None, typer.Argument(help="Its input: JSON when it parses, else a string.")
    ] = None,
    cron: Annotated[
        str | None, typer.Option("--cron", help="Cron expression, e.g. '0 9 * * 1-5'.")
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="IANA time zone for --cron and for times without an offset."),
    ] = None,
    every: Annotated[
        str | None, typer.Option("--every", help="Fire every DURATION (90s, 10m, 2h, 1d).")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Fire once at TIME (ISO 8601, or +DURATION).")
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help="No fire time before.")] = None,
    end: Annotated[str | None, typer.Option("--end", help="No fire time after.")] = None,
    shared: Annotated[
        bool, typer.Option("--shared", help="Every firing continues one session.")
    ] = False,
    overlap: Annotated[
        Overlap | None,
        typer.Option("--overlap", help="While the previous run is active (default: skip)."),
    ] = None,
    misfire: Annotated[
        Misfire | None,
        typer.Option("--misfire", help="Fire times missed while down (default: run_once)."),
    ] = None,
    max_catch_up: Annotated[
        int | None, typer.Option("--max-catch-up", help="With --misfire catch_up: at most N.")
    ] = None,
    max_lateness: Annotated[
        str | None,
        typer.Option("--max-lateness", help="With --misfire catch_up: at most DURATION late."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A label.")] = None,
    url: Url = None,
    api_key: ApiKey = None,
    json: Json = False,
) -> None:
    """Add a schedule: one of --cron (with --tz), --every or --at. Prints its id."""
    with connect(url, api_key) as client:
        created = client.create_schedule(
            agent,
            parse_input(input),
            cron=cron,
            timezone=tz if cron else None,
            every=parse_duration(every) if every else None,
            at=parse_time(at, tz) if at else None,
            start_at=parse_time(start, tz) if start else None,
            end_at=parse_time(end, tz) if end else None,
            session="shared" if shared else None,
            overlap=overlap.value if overlap else None,
            misfire=misfire.value if misfire else None,
            max_catch_up=max_catch_up,
            max_lateness=parse_duration(max_lateness) if max_lateness else None,
            name=name,
        )
    if json:
        print_json(created)
        return
    sys.stdout.write(created["id"] + "\n")
    stderr().print(
        f"{cadence(created)}; next fire {when(created['next_fire_at'])} "
        f"({until(created['next_fire_at'])})",
        style="dim",
    )


@_command("ls")
def ls(
    limit: Annotated[int, typer.Option("--limit", help="At most this many.")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue a listing.")] = None,
    url: Url = None,
    api_key: ApiKey = None,
    json: Json = False,
) -> None:
    """List schedules, newest first, with their next fire times."""
    with connect(url, api_key) as client:
        page = client.list_schedules(limit=limit, cursor=cursor)
    if json:
        print_json(page.data)
        return
    table = Table(box=None)
    table.add_column("SCHEDULE", no_wrap=True)
    for column in ("NAME", "AGENT", "WHEN", "NEXT", "STATE", "RUNS", "MISSED", "FAILING"):
        table.add_column(column)
    for s in page.data:
        counts = s["counts"]
        table.add_row(
            s["id"],
            s["name"] or "",
            s["agent"],
            cadence(s),
            until(s["next_fire_at"]) if not s["paused"] else "-",
            state(s),
            str(counts["started"]),
            str(counts["missed"]),
            str(counts["consecutive_failures"] or ""),
        )
    stdout().print(table)
    if page.next_cursor:
        stderr().print(f"more: culm schedules ls --cursor {page.next_cursor}", style="dim")


@_command("show")
def show(
    schedule_id: ScheduleId,
    limit: Annotated[int, typer.Option("--limit", help="Firings to show.")] = 10,
    url: Url = None,
    api_key: ApiKey = None,
    json: Json = False,
) -> None:
    """Show a schedule, its counters and its latest firings."""
    with connect(url, api_key) as client:
        found = client.get_schedule(schedule_id)
        firings = client.schedule_firings(schedule_id, limit=limit).data
    if json:
        print_json({**found, "firings": firings})
        return
    counts = found["counts"]
    grid = Table.grid(padding=(0, 2))
    rows: list[tuple[str, str | Text]] = [
        ("schedule", found["id"] + (f"  ({found['name']})" if found["name"] else "")),
        ("agent", found["agent"]),
        ("input", compact(found["input"], 200)),
        ("when", cadence(found)),
        ("state", state(found)),
        ("next fire", f"{when(found['next_fire_at'])} ({until(found['next_fire_at'])})"),
        ("session", found["session_id"] or "new each firing"),
        ("overlap", found["overlap"]),
        ("misfire", found["misfire"]),
        ("last run", f"{found['last_run_id'] or '-'} at {when(found['last_fired_at'])}"),
        (
            "counts",
            f"{counts['started']} started, {counts['completed']} completed, "
            f"{counts['failed']} failed, {counts['skipped_overlap']} skipped, "
            f"{counts['missed']} missed, {counts['failed_to_start']} failed to start",
        ),
    ]
    if found["start_at"] or found["end_at"]:
        rows.insert(6, ("window", f"{when(found['start_at'])} .. {when(found['end_at'])}"))
    if counts["consecutive_failures"]:
        rows.append(("failing", Text(f"{counts['consecutive_failures']} in a row", "red")))
    for label, value in rows:
        grid.add_row(Text(label, style="dim"), value)
    out = stdout()
    out.print(grid)
    if not firings:
        return
    table = Table(box=None, title="firings", title_justify="left", title_style="dim")
    for column in ("SCHEDULED", "FIRED", "OUTCOME", "RUN", "STATUS", "DETAIL"):
        table.add_column(column)
    for f in firings:
        table.add_row(
            when(f["scheduled_at"]) + (" (now)" if f["manual"] else ""),
            when(f["fired_at"]),
            outcome(f),
            f["run_id"] or "",
            status_text(f["run_status"]) if f["run_status"] else "",
            f["detail"] or "",
        )
    out.print(table)


@_command("pause")
def pause(schedule_id: ScheduleId, url: Url = None, api_key: ApiKey = None) -> None:
    """Stop firing until resumed."""
    with connect(url, api_key) as client:
        client.pause_schedule(schedule_id)
    stdout().print(f"{schedule_id} paused")


@_command("resume")
def resume(schedule_id: ScheduleId, url: Url = None, api_key: ApiKey = None) -> None:
    """Fire again, from the next fire time after now."""
    with connect(url, api_key) as client:
        found = client.resume_schedule(schedule_id)
    stdout().print(f"{schedule_id} resumed; next fire {when(found['next_fire_at'])}")


@_command("trigger")
def trigger(
    schedule_id: ScheduleId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream the run it starts until it ends.")
    ] = False,
    url: Url = None,
    api_key: ApiKey = None,
    json: Json = False,
) -> None:
    """Fire now without moving the cadence; prints the id of the run it starts.

    The overlap policy applies: while a run of the schedule is active, the firing may be
    skipped, wait, or cancel that run."""
    with connect(url, api_key) as client:
        firing = client.trigger_schedule(schedule_id)
        if json:
            sys.stdout.write(orjson.dumps(firing).decode() + "\n")
        elif firing["run_id"] is not None:
            sys.stdout.write(firing["run_id"] + "\n")
        if firing["outcome"] == "waiting":
            stderr().print(f"{schedule_id} fired; it starts when the active run ends")
        elif firing["run_id"] is None:
            why = f": {firing['detail']}" if firing["detail"] else ""
            raise fail(f"{schedule_id} did not start a run ({firing['outcome']}){why}")
        elif follow:
            raise typer.Exit(follow_run(client, client.get_run(firing["run_id"])))


@_command("rm")
def rm(schedule_id: ScheduleId, url: Url = None, api_key: ApiKey = None) -> None:
    """Delete a schedule and its ledger; the runs it started stay."""
    with connect(url, api_key) as client:
        client.delete_schedule(schedule_id)
    stdout().print(f"{schedule_id} deleted")
