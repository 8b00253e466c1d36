"""How the CLI shows things: event lines, statuses, and the live view of a followed run."""

from __future__ import annotations

import time
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from culm import events as ev

if TYPE_CHECKING:
    from culm.client import EventInfo, RunInfo

STATUS_STYLES = {
    "pending": "yellow",
    "running": "cyan",
    "waiting": "bold yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
    "interrupted": "red",
}
_EVENT_STYLES = {
    ev.TOOL_STARTED: "blue",
    ev.TOOL_COMPLETED: "green",
    ev.TOOL_FAILED: "red",
    ev.RUN_COMPLETED: "bold green",
    ev.RUN_FAILED: "bold red",
    ev.RUN_CANCELLED: "bold magenta",
    ev.RUN_INTERRUPTED: "bold red",
}


def compact(value: Any, width: int = 100) -> str:
    """``value`` as one line of JSON, cut to ``width`` characters."""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def when(iso: str | None) -> str:
    """An ISO 8601 time from the server in local time, to the second."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def since(iso: str | None) -> str:
    """How long ago an ISO 8601 time was: ``42s ago``, ``5m ago``, ``3h ago``, ``2d ago``."""
    if not iso:
        return "-"
    seconds = max(0.0, time.time() - datetime.fromisoformat(iso).timestamp())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def event_line(event: EventInfo) -> Text:
    """``  seq  time  type  data`` on one line."""
    clock = datetime.fromisoformat(event["ts"]).astimezone().strftime("%H:%M:%S.%f")[:-3]
    style = _EVENT_STYLES.get(event["type"], "")
    return Text.assemble(
        (f"{event['seq']:>5}  ", "dim"),
        (f"{clock}  ", "dim"),
        (f"{event['type']:<18}", style),
        " ",
        compact(event["data"]) if event["data"] else "",
    )


def delta_text(data: dict[str, Any]) -> str:
    """The text a ``message.delta`` carries."""
    for key in ("text", "delta", "content"):
        value = data.get(key)
        if isinstance(value, str):
            return value
    return ""


def total_tokens(usage: dict[str, Any] | None) -> int | None:
    for key in ("total_tokens", "total"):
        if usage and isinstance(usage.get(key), int):
            return int(usage[key])
    return None


class RunView:
    """Shows a followed run as it happens: streamed text goes to stdout as it arrives,
    tool calls and other events as lines, and on a terminal a live status line.

    On a terminal everything is drawn through the live display; when stdout is piped,
    stdout gets only the run's text (or its output) and the rest goes to stderr.
    """

    def __init__(self, run: RunInfo, out: Console, err: Console) -> None:
        self.run = run
        self.out = out
        self.status = run["status"]
        self.round = run["round"]
        self.tool: str | None = run["last_tool"]
        self.phase: str | None = run["last_tool_phase"]
        self.usage = run["usage"]
        self.last_seq = 0
        self.error: str | None = None
        self._began = time.monotonic()
        self._partial = ""  # the current line of text, not yet printed (terminal only)
        self._mid_line = False  # stdout's last text did not end with a newline (pipe only)
        self._streamed = False
        self._live = Live(self, console=out, transient=True, refresh_per_second=8)
        self._terminal = out.is_terminal
        self.info = out if self._terminal else err

    def __enter__(self) -> RunView:
        self.resume()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.pause()

    def pause(self) -> None:
        """Stop drawing (before a prompt); the text of an unfinished line is kept."""
        if self._live.is_started:
            self._live.stop()

    def resume(self) -> None:
        if self._terminal and not self._live.is_started:
            self._live.start()

    def __rich__(self) -> RenderableType:
        elapsed = time.monotonic() - self._began
        parts = [self.run["id"], self.run["agent"], self.status]
        if self.round:
            parts.append(f"round {self.round}")
        if self.tool:
            parts.append(f"{self.tool} ({self.phase})" if self.phase else self.tool)
        tokens = total_tokens(self.usage)
        if tokens is not None:
            parts.append(f"{tokens:,} tokens")
        parts.append(f"{elapsed:.1f}s")
        status = Spinner("dots", Text(" · ".join(parts), style="dim"))
        return Group(Text(self._partial), status) if self._partial else status

    def show(self, event: EventInfo) -> None:
        """Draw one event and fold it into the status line."""
        kind, data = event["type"], event["data"]
        self.last_seq = event["seq"]
        if kind == ev.MESSAGE_DELTA:
            if data.get("reset"):  # a retried model call: what streamed so far is void
                self._end_line()
                self.info.print("  ↻ model call retried; its answer starts over", style="dim")
            self._text(delta_text(data))
            return
        self._end_line()
        if kind == ev.RUN_STARTED:
            self.status = "running"
        elif kind == ev.ROUND_STARTED:
            self.round = int(data.get("round", self.round + 1))
        elif kind == ev.BUDGET_UPDATED:
            self.usage = data.get("usage", data)
        elif kind in (ev.TOOL_STARTED, ev.TOOL_COMPLETED, ev.TOOL_FAILED):
            self._tool(kind, data)
        elif kind in ev.TERMINAL:
            self._finish(kind, data)
        elif kind == ev.RUN_RESUMED and data.get("cause") == "input":
            self.status = "running"
        elif kind == ev.RUN_RESUMED:
            attempt = data.get("attempt")
            self.info.print(
                f"  ↻ resumed after its server stopped (attempt {attempt})", style="dim"
            )
        elif kind == ev.ROUND_RESTARTED:  # the text streamed in that round before is void
            round_ = data.get("round")
            self.info.print(f"  ↻ round {round_} was cut off; its answer starts over", style="dim")
        elif kind in (ev.CHILD_STARTED, ev.CHILD_COMPLETED):
            self.info.print(Text.assemble(("  ↳ ", "dim"), kind, " ", compact(data)))
        elif kind == ev.RUN_WAITING:
            self._waiting(data)
        elif kind == ev.INPUT_RECEIVED:
            self.status = "running"
            self.info.print(Text.assemble(("  ↩ ", "yellow"), answered(data)))
        elif kind == ev.MESSAGE_INJECTED:
            self.info.print(Text.assemble(("  ✉ ", "cyan"), str(data.get("content", ""))))
        elif kind not in (ev.RUN_QUEUED, ev.MESSAGE_COMPLETED, ev.ROUND_COMPLETED):
            self.info.print(Text.assemble(("  · ", "dim"), (kind, "dim"), " ", compact(data)))

    def _waiting(self, data: dict[str, Any]) -> None:
        """A run that waits for a person: what it asks, and how to answer from here."""
        self.status = "waiting"
        rid = self.run["id"]
        if data.get("kind") == "approval":
            args = compact(data.get("arguments"), 80)
            asked = Text.assemble("approve ", (str(data.get("tool")), "bold"), f"({args})?")
            how = f"culm approve {rid}  (or --deny --reason ...)"
        else:
            asked = Text(str(data.get("question")))
            how = f"culm answer {rid} TEXT"
        self.info.print(Text.assemble(("  ? ", "bold yellow"), "waiting: ", asked))
        self.info.print(f"    answer with: {how}", style="dim")

    def _text(self, text: str) -> None:
        if not text:
            return
        self._streamed = True
        if not self._terminal:
            self.out.file.write(text)
            self.out.file.flush()
            self._mid_line = not text.endswith("\n")
            return
        *done, self._partial = (self._partial + text).split("\n")
        for line in done:
            self.out.print(line, markup=False, highlight=False)

    def _end_line(self) -> None:
        if self._partial:
            # cleared first: printing redraws the live region, which shows the partial line
            line, self._partial = self._partial, ""
            self.out.print(line, markup=False, highlight=False)
        if self._mid_line:
            self.out.file.write("\n")
            self.out.file.flush()
            self._mid_line = False

    def _tool(self, kind: str, data: dict[str, Any]) -> None:
        self.tool = str(data.get("name", self.tool))
        if kind == ev.TOOL_STARTED:
            self.phase = "begin"
            args = compact(data.get("arguments", data.get("args", "")), 80)
            self.info.print(Text.assemble(("  → ", "blue"), (self.tool, "bold"), f"({args})"))
        elif kind == ev.TOOL_COMPLETED:
            self.phase = "finished"
            result = compact(data.get("result", data.get("output", "")), 80)
            self.info.print(Text.assemble(("  ✓ ", "green"), (self.tool, "bold"), " ", result))
        else:
            self.phase = "error"
            error = compact(data.get("error", ""), 120)
            self.info.print(Text.assemble(("  ✗ ", "red"), (self.tool, "bold"), ": ", error))

    def _finish(self, kind: str, data: dict[str, Any]) -> None:
        self.status = kind.removeprefix("run.")
        elapsed = f"{time.monotonic() - self._began:.1f}s"
        if kind == ev.RUN_COMPLETED:
            output = data.get("output")
            # a model agent returns its answer with how it stopped
            answer = output.get("text") if isinstance(output, dict) else output
            stopped = output.get("stop_reason") if isinstance(output, dict) else None
            if not self._streamed and answer is not None:
                self._text(answer if isinstance(answer, str) else compact(answer, 10**9))
                self._end_line()
            note = f" ({stopped})" if stopped and stopped != "answered" else ""
            done = f"✓ {self.run['id']} completed in {elapsed}{note}"
            self.info.print(Text(done, style="green"))
            return
        self.error = str(data.get("error") or data.get("reason") or "")
        if kind == ev.RUN_CANCELLED:
            who = data.get("by")
            why = f" by {who}" if who else ""
            why += f": {data['reason']}" if data.get("reason") else ""
            self.info.print(Text(f"■ {self.run['id']} cancelled{why}", style="magenta"))
        else:
            self.info.print(Text(f"✗ {self.run['id']} {self.status}: {self.error}", style="red"))


def answered(data: dict[str, Any]) -> str:
    """An ``input.received`` event in a few words."""
    late = " (nobody answered in time)" if data.get("timed_out") else ""
    if "approve" in data:
        verdict = "approved" if data.get("approve") else "refused"
        reason = f": {data['reason']}" if data.get("reason") else ""
        return f"{verdict}{reason}{late}"
    return f"answered {compact(data.get('answer'), 80)}{late}"
