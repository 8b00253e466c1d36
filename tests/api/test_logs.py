"""``culm serve``'s log lines: one per request and per run state change, text or JSON."""

from __future__ import annotations

import json
import logging

import pytest

from culm.api.logs import JsonFormatter, describe
from culm.events import Event


def event(type: str, **data: object) -> Event:
    return Event(seq=1, run_id="run_1", session_id="ses_1", type=type, data=dict(data))


class TestRunLines:
    """Each state change is one line; a failure carries its error and traceback."""

    @pytest.mark.parametrize(
        ("kind", "data", "level", "message"),
        [
            ("run.queued", {"agent": "assistant"}, logging.INFO, "run run_1 queued (assistant)"),
            ("run.started", {}, logging.INFO, "run run_1 started"),
            ("run.completed", {"output": "x"}, logging.INFO, "run run_1 completed"),
            (
                "run.cancelled",
                {"by": "http:default", "reason": "enough"},
                logging.INFO,
                "run run_1 cancelled by http:default: enough",
            ),
            (
                "run.interrupted",
                {"reason": "server shut down"},
                logging.WARNING,
                "run run_1 interrupted: server shut down",
            ),
        ],
    )
    def test_state_changes(
        self, kind: str, data: dict[str, object], level: int, message: str
    ) -> None:
        line = describe(event(kind, **data))
        assert line is not None
        assert line[:2] == (level, message)
        assert line[2]["run_id"] == "run_1"

    def test_a_failure_logs_its_traceback(self) -> None:
        trace = 'Traceback (most recent call last):\n  File "a.py", line 3\nRuntimeError: boom\n'
        line = describe(event("run.failed", error="RuntimeError: boom", traceback=trace))
        assert line is not None
        level, message, fields = line
        assert level == logging.ERROR
        assert message.startswith("run run_1 failed: RuntimeError: boom\nTraceback")
        assert fields["traceback"] == trace and fields["error"] == "RuntimeError: boom"

    def test_other_events_make_no_line(self) -> None:
        assert describe(event("message.delta", text="hi")) is None
        assert describe(event("tool.started", name="f")) is None


def test_json_lines_carry_the_fields() -> None:
    record = logging.LogRecord("culm.runs", logging.INFO, "x.py", 1, "run %s started", ("r",), None)
    record.culm = {"run_id": "r", "status": "started"}
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "run r started"
    assert (line["level"], line["logger"], line["run_id"], line["status"]) == (
        "info",
        "culm.runs",
        "r",
        "started",
    )
