"""The SSE decoder: what the server's streams look like, line by line."""

from __future__ import annotations

import pytest

from culm.client.sse import SSEDecoder, SSEMessage


def decode(lines: list[str]) -> list[SSEMessage]:
    decoder = SSEDecoder()
    return [m for line in lines if (m := decoder.feed(line)) is not None]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ["id: 3", "event: run.started", 'data: {"seq": 3}', ""],
            [SSEMessage("run.started", '{"seq": 3}', "3")],
        ),
        # heartbeats and the reconnect hint dispatch nothing
        ([": ping", "", "retry: 1000", ""], []),
        # several data lines join with newlines; no space after the colon is fine too
        (["data:a", "data: b", ""], [SSEMessage("message", "a\nb", "")]),
        # a message without a blank line after it has not arrived yet
        (["id: 1", "data: x"], []),
        # unknown fields are ignored; an id with NUL is ignored
        (["foo: bar", "id: 1\0", "data: x", ""], [SSEMessage("message", "x", "")]),
        (
            ["id: 1", "data: a", "", "id: 2", "data: b", ""],
            [SSEMessage("message", "a", "1"), SSEMessage("message", "b", "2")],
        ),
    ],
)
def test_decoder(lines: list[str], expected: list[SSEMessage]) -> None:
    assert decode(lines) == expected
