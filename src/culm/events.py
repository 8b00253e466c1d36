"""Event types: the stable names every stream carries.

An event is appended to the durable log before anyone is shown it; its ``seq`` is its
position in its run's stream (1, 2, 3, ...) and ``pos`` its position in the whole log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

RUN_QUEUED: Final = "run.queued"
RUN_STARTED: Final = "run.started"
ROUND_STARTED: Final = "round.started"
ROUND_COMPLETED: Final = "round.completed"
MESSAGE_DELTA: Final = "message.delta"
MESSAGE_COMPLETED: Final = "message.completed"
TOOL_STARTED: Final = "tool.started"
TOOL_COMPLETED: Final = "tool.completed"
TOOL_FAILED: Final = "tool.failed"
BUDGET_UPDATED: Final = "budget.updated"
CHILD_STARTED: Final = "child.started"
CHILD_COMPLETED: Final = "child.completed"
RUN_COMPLETED: Final = "run.completed"
RUN_FAILED: Final = "run.failed"
RUN_CANCELLED: Final = "run.cancelled"
RUN_INTERRUPTED: Final = "run.interrupted"
RUN_RESUMED: Final = "run.resumed"
"""A run whose process died goes on in another attempt: ``{attempt, after_seq}``; or, with
``cause: "input"``, a run a person answered is taken up again (same attempt)."""
ROUND_RESTARTED: Final = "round.restarted"
"""A model call a crash cut off is made again: ``{round, attempt, discard_after_seq}``;
the round's ``message.delta`` events after ``discard_after_seq`` of earlier attempts are
void."""
STEP_COMPLETED: Final = "step.completed"
"""A function agent's ``run.step`` finished: ``{name, result}``."""
RUN_WAITING: Final = "run.waiting"
"""The run stops until a person answers: ``{kind: "approval", call_id, tool, arguments}``
or ``{kind: "question", call_id, question, schema}``, with ``timeout`` (seconds),
``expires_at`` (ISO 8601), ``deadline`` (epoch seconds) and ``on_timeout`` when the wait
is bounded."""
INPUT_RECEIVED: Final = "input.received"
"""The answer a waiting run goes on with: ``{call_id, kind, by}`` and ``approve``,
``reason``, ``arguments`` (an approval) or ``answer`` (a question); ``timed_out`` when
nobody answered in time."""
MESSAGE_INJECTED: Final = "message.injected"
"""A message sent to a running model agent, taken in at a round boundary:
``{id, content, round}``."""

TERMINAL: Final = frozenset({RUN_COMPLETED, RUN_FAILED, RUN_CANCELLED, RUN_INTERRUPTED})
"""Exactly one of these ends every run's stream."""

RESERVED_PREFIX: Final = "run."
"""Lifecycle events belong to the engine; user code may not emit types under this prefix."""


@dataclass(slots=True)
class Event:
    """One entry of a run's stream: ``{seq, run_id, session_id, type, ts, data}``, and the
    run's ``parent_run_id``."""

    seq: int
    run_id: str
    session_id: str
    type: str
    data: dict[str, Any]
    ts: float = field(default_factory=time.time)
    pos: int = 0
    """Position in the whole log, assigned when the event is stored (0 until then)."""
    parent_run_id: str | None = None
    """The parent of the event's run (a spawned run's), so a stream of a whole tree says
    where each event belongs. Not part of the stored row: the store reads it from the run."""
    _json: bytes | None = field(default=None, repr=False, compare=False)
    _data_json: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "run_id": self.run_id,
            "session_id": self.session_id,
            "type": self.type,
            "ts": iso(self.ts),
            "data": self.data,
            "parent_run_id": self.parent_run_id,
        }

    def data_json(self) -> bytes:
        """``data`` as JSON bytes, as the log stores it (encoded once, when it was checked)."""
        if self._data_json is None:
            self._data_json = encode(self.data)
        return self._data_json

    def to_json(self) -> bytes:
        """The event as JSON bytes (``to_dict``'s), encoded once however many subscribers
        receive it. A runner encodes it as it emits (``event_json``); an event read from
        the log is encoded here, when first asked for."""
        if self._json is None:
            self._json = event_json(
                self.seq,
                ids_json(self.run_id, self.session_id),
                self.type,
                self.ts,
                self.data_json(),
                parent_json(self.parent_run_id),
            )
        return self._json


_EVENT_JSON = b'{"seq":%d,%b,"type":%b,"ts":"%b","data":%b,"parent_run_id":%b}'


def event_json(
    seq: int, ids: bytes, type: str, ts: float, data_json: bytes, parent: bytes
) -> bytes:
    """An event's JSON, spliced from its parts: its data's JSON (encoded when its data
    was checked), ``ids`` and ``parent``, which a runner encodes once for all its events
    (``ids_json``, ``parent_json``), its type's, kept by type. Every event a stream sends
    is encoded here once; one formatting of bytes costs about half what encoding a dict
    holding a datetime did."""
    return _EVENT_JSON % (seq, ids, _type_json(type), iso_bytes(ts), data_json, parent)


def ids_json(run_id: str, session_id: str) -> bytes:
    """The run's and session's ids as members of an event's JSON object."""
    return b'"run_id":%b,"session_id":%b' % (orjson.dumps(run_id), orjson.dumps(session_id))


def parent_json(parent_run_id: str | None) -> bytes:
    return b"null" if parent_run_id is None else encode(parent_run_id)


_types: dict[str, bytes] = {}


def _type_json(name: str) -> bytes:
    encoded = _types.get(name)
    if encoded is None:
        encoded = encode(name)
        if len(_types) < 10_000:  # a run making up types without end cannot grow it
            _types[name] = encoded
    return encoded


_second: tuple[int | None, bytes] = (None, b"")
"""The last whole second ``iso_bytes`` formatted, and its date and time: one tuple,
read once, so a thread formatting another second meanwhile cannot mix the two."""


def iso_bytes(ts: float) -> bytes:
    """``iso(ts)`` as bytes, without making a datetime: the date and time of a second
    are formatted once, its microseconds each time, rounded as ``datetime`` rounds them
    (half to even) and left out when they are zero, as ``isoformat`` leaves them out."""
    global _second
    whole = math.floor(ts)
    micros = round((ts - whole) * 1e6)
    if micros >= 1_000_000:
        whole += 1
        micros -= 1_000_000
    second = _second
    if second[0] != whole:
        text = datetime.fromtimestamp(whole, UTC).isoformat().replace("+00:00", "")
        second = _second = (whole, text.encode())
    return b"%b.%06dZ" % (second[1], micros) if micros else second[1] + b"Z"


def by_run(events: Sequence[Event]) -> Iterator[Sequence[Event]]:
    """``events`` in slices of consecutive events of one run, in order. A commit of the
    log holds each run's events together, so whoever sorts a batch by run (the bus, the
    cache of recent events) does it per slice rather than per event."""
    start, count = 0, len(events)
    while start < count:
        run_id = events[start].run_id
        end = start + 1
        while end < count and events[end].run_id == run_id:
            end += 1
        yield events[start:end]
        start = end


def encode(value: Any) -> bytes:
    """``value`` as JSON bytes that take no more memory than their length.

    orjson hands back its whole working buffer (4 KB at least) as the bytes it returns;
    events keep their encoded JSON for as long as they are remembered (runners, the recent
    events' cache), where that was 8 KB per waiting run and sixteen times what the cache
    counted for a small event. One copy of the exact size is cheaper than keeping that."""
    return bytes(memoryview(orjson.dumps(value)))


def iso(ts: float | None) -> str | None:
    """An epoch timestamp as an ISO 8601 string in UTC."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
