"""Server-Sent Events decoding, as a pure line-by-line state machine (no I/O).

Follows the WHATWG rules culm's server relies on: ``field: value`` lines, ``data`` lines
joined by newlines, a blank line dispatches, lines starting with ``:`` are comments (the
server's ``: ping`` heartbeats).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class SSEMessage:
    """One dispatched message; ``id`` is ``""`` when the message carried none."""

    event: str
    data: str
    id: str


class SSEDecoder:
    """Feed it lines without their line break; it returns a message on each blank line
    that ends one, else None."""

    __slots__ = ("_data", "_event", "_id")

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id = ""

    def feed(self, line: str) -> SSEMessage | None:
        if not line:
            if not self._data and not self._event:
                return None
            message = SSEMessage(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], ""
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
