"""The live view of a followed run, fed a model agent's events: text to stdout as it
streams, tool calls and the outcome to stderr; on a terminal, one live display."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from culm.cli.view import RunView
from culm.client import EventInfo, RunInfo

RUN: RunInfo = {
    "id": "run_1",
    "session_id": "ses_1",
    "agent": "helper",
    "input": "weather?",
    "status": "pending",
    "trigger": "http",
    "parent_run_id": None,
    "schedule_id": None,
    "created_at": "2026-01-01T00:00:00Z",
    "started_at": None,
    "completed_at": None,
    "round": 0,
    "last_tool": None,
    "last_tool_phase": None,
    "last_event_at": None,
    "last_seq": 1,
    "usage": None,
    "output": None,
    "error": None,
}

STREAM: list[tuple[str, dict[str, Any]]] = [
    ("run.queued", {"agent": "helper"}),
    ("run.started", {}),
    ("round.started", {"round": 1}),
    ("message.delta", {"text": "Let me "}),
    ("message.delta", {"text": "check.\nOne moment"}),
    ("message.completed", {"text": "Let me check.\nOne moment"}),
    ("budget.updated", {"usage": {"total_tokens": 1234}, "budget_left": 10}),
    ("tool.started", {"name": "get_weather", "call_id": "c1", "arguments": {"city": "Oslo"}}),
    ("tool.completed", {"name": "get_weather", "call_id": "c1", "result": "rain"}),
    ("tool.failed", {"name": "get_time", "call_id": "c2", "error": "no clock"}),
    ("round.completed", {"round": 1}),
    ("round.started", {"round": 2}),
    ("message.delta", {"text": "Half an ans"}),
    ("message.delta", {"text": "", "reset": True}),
    ("message.delta", {"text": "It rains in Oslo."}),
    ("message.completed", {"text": "It rains in Oslo."}),
    ("run.completed", {"output": "It rains in Oslo."}),
]


def events(stream: list[tuple[str, dict[str, Any]]]) -> list[EventInfo]:
    return [
        {
            "seq": seq,
            "run_id": "run_1",
            "session_id": "ses_1",
            "type": kind,
            "ts": "2026-01-01T00:00:00Z",
            "data": data,
        }
        for seq, (kind, data) in enumerate(stream, 1)
    ]


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    file = io.StringIO()
    return Console(file=file, force_terminal=terminal, width=100, color_system=None), file


class TestPiped:
    """With stdout piped, stdout carries exactly the streamed text."""

    def test_model_agent(self) -> None:
        (out, out_file), (err, err_file) = console(False), console(False)
        with RunView(RUN, out, err) as view:
            for event in events(STREAM):
                view.show(event)
        assert out_file.getvalue() == (
            "Let me check.\nOne moment\nHalf an ans\nIt rains in Oslo.\n"
        )
        assert err_file.getvalue().splitlines()[:4] == [
            '  → get_weather({"city":"Oslo"})',
            "  ✓ get_weather rain",
            "  ✗ get_time: no clock",
            "  ↻ model call retried; its answer starts over",
        ]
        assert "run_1 completed in" in err_file.getvalue()
        assert (view.status, view.round, view.tool, view.phase) == (
            "completed",
            2,
            "get_time",
            "error",
        )
        assert view.usage == {"total_tokens": 1234}

    def test_output_is_printed_when_nothing_streamed(self) -> None:
        (out, out_file), (err, _) = console(False), console(False)
        with RunView(RUN, out, err) as view:
            for event in events([("run.started", {}), ("run.completed", {"output": [1, 2]})]):
                view.show(event)
        assert out_file.getvalue() == "[1,2]\n"

    def test_a_model_agents_answer_is_its_text(self) -> None:
        (out, out_file), (err, err_file) = console(False), console(False)
        output = {"text": "Hi.", "stop_reason": "max_rounds", "rounds": 3}
        with RunView(RUN, out, err) as view:
            for event in events([("run.completed", {"output": output})]):
                view.show(event)
        assert out_file.getvalue() == "Hi.\n"
        assert "completed in" in err_file.getvalue()
        assert "(max_rounds)" in err_file.getvalue()

    def test_failed(self) -> None:
        (out, out_file), (err, err_file) = console(False), console(False)
        with RunView(RUN, out, err) as view:
            for event in events([("run.failed", {"error": "RuntimeError: boom"})]):
                view.show(event)
        assert view.status == "failed"
        assert out_file.getvalue() == ""
        assert "run_1 failed: RuntimeError: boom" in err_file.getvalue()


class TestTerminal:
    """On a terminal the text and the event lines share one live display."""

    def test_model_agent(self) -> None:
        (out, out_file), (err, err_file) = console(True), console(True)
        with RunView(RUN, out, err) as view:
            for event in events(STREAM):
                view.show(event)
        shown = out_file.getvalue()
        for text in ("Let me check.", "get_weather", "It rains in Oslo.", "completed in"):
            assert text in shown
        assert err_file.getvalue() == ""


class TestResumed:
    """A run resumed after its server stopped says so, and which round starts over."""

    def test_resume_and_a_restarted_round(self) -> None:
        (out, _), (err, err_file) = console(False), console(False)
        stream = [
            ("run.started", {}),
            ("round.started", {"round": 1}),
            ("message.delta", {"text": "Half", "round": 1, "attempt": 0}),
            ("run.resumed", {"attempt": 1, "after_seq": 3}),
            ("round.restarted", {"round": 1, "attempt": 1, "discard_after_seq": 2}),
            ("message.delta", {"text": "Whole.", "round": 1, "attempt": 1}),
            ("run.completed", {"output": "Whole."}),
        ]
        with RunView(RUN, out, err) as view:
            for event in events(stream):
                view.show(event)
        assert err_file.getvalue().splitlines()[:2] == [
            "  ↻ resumed after its server stopped (attempt 1)",
            "  ↻ round 1 was cut off; its answer starts over",
        ]
