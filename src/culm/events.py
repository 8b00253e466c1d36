"""Event types: the stable names every stream carries.

An event is appended to the durable log before anyone is shown it; its ``seq`` is its
position in its run's stream (1, 2, 3, ...) and ``pos`` its position in the whole log.
"""

from __future__ import annotations

import time
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
        receive it. The data's JSON, encoded when the event was emitted, is spliced in
        rather than encoded again."""
        if self._json is None:
            head = orjson.dumps(
                {
                    "seq": self.seq,
                    "run_id": self.run_id,
                    "session_id": self.session_id,
                    "type": self.type,
                    "ts": datetime.fromtimestamp(self.ts, UTC),
                },
                option=orjson.OPT_UTC_Z,
            )
            parent = b"null" if self.parent_run_id is None else orjson.dumps(self.parent_run_id)
            self._json = b'%b,"data":%b,"parent_run_id":%b}' % (head[:-1], self.data_json(), parent)
        return self._json


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
