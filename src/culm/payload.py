"""JSON values checked and copied where they enter culm, so the log can always store them.

Everything a run emits, returns or hands a tool, and everything a client sends, ends up in
the event log as JSON. A value the log cannot store (a set, an object, ``2**70``, ``NaN``,
a lone surrogate, nesting deeper than the encoder's recursion limit, an event of
100 MB) must fail the call that brought it in, with a message naming where the bad part
is, and never reach the writer, which would otherwise retry it forever and stall every
run in the process. ``check`` is that gate: it returns a fresh copy (so a caller that
mutates its dict after emitting it changes nothing stored) and the value's encoded size.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from culm.errors import InvalidPayload
from culm.events import encode

__all__ = ["DEFAULT_LIMITS", "InvalidPayload", "Limits", "check", "check_encoded", "loads"]

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Limits:
    """How deep and how large one value may be."""

    max_depth: int = 64
    """Nesting of objects and arrays; the top level is depth 1."""
    max_bytes: int = 1_048_576
    """Encoded JSON size of one value."""


DEFAULT_LIMITS = Limits()


def check(value: Any, limits: Limits = DEFAULT_LIMITS, *, what: str = "value") -> Any:
    """A copy of ``value`` made of plain JSON types only (tuples become lists), or
    ``InvalidPayload`` naming the first part that cannot be stored and why."""
    return check_encoded(value, limits, what=what)[0]


def check_encoded(
    value: Any, limits: Limits = DEFAULT_LIMITS, *, what: str = "value"
) -> tuple[Any, bytes]:
    """``check``, and the copy's JSON, which the caller may store as it is."""
    try:
        copy = _copy(value, 1, limits.max_depth)
    except _Refused as refused:
        where = what + "".join(reversed(refused.where))
        raise InvalidPayload(f"{where}: {refused.reason}") from None
    encoded = encode(copy)
    if len(encoded) > limits.max_bytes:
        raise InvalidPayload(
            f"{what} is {len(encoded)} bytes of JSON, more than the limit of {limits.max_bytes}"
        )
    return copy, encoded


class _Refused(Exception):
    """Why a part of a value cannot be stored; the path to it is added on the way up
    (``where``, innermost first), so a value that is fine never builds one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where: list[str] = []


def _copy(value: Any, depth: int, max_depth: int) -> Any:
    # exact type checks first: the common cases cost one dict lookup each
    kind = type(value)
    if kind is str:
        # only a string with a character past ASCII can hold a surrogate: most cost no search
        if not value.isascii() and _SURROGATE.search(value) is not None:
            raise _Refused("text holds a lone surrogate, which is not UTF-8")
        return value
    if value is None or kind is bool:
        return value
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise _Refused(
                f"the integer {_short(value)} does not fit in 64 bits; send it as a string"
            )
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _Refused(f"{value} is not a JSON number")
        return value
    if kind is dict or kind is list or kind is tuple:
        if depth > max_depth:
            raise _Refused(
                f"nested more than {max_depth} levels deep (the limit; CULM_MAX_JSON_DEPTH)"
            )
        if kind is dict:
            out: dict[str, Any] = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise _Refused(f"object keys must be strings, not {type(key).__name__}")
                if not key.isascii() and _SURROGATE.search(key) is not None:
                    raise _Refused("a key holds a lone surrogate")
                try:
                    out[key] = _copy(item, depth + 1, max_depth)
                except _Refused as refused:
                    refused.where.append(f".{key}")
                    raise
            return out
        items: list[Any] = []
        for i, item in enumerate(value):
            try:
                items.append(_copy(item, depth + 1, max_depth))
            except _Refused as refused:
                refused.where.append(f"[{i}]")
                raise
        return items
    # subclasses of the plain types (an IntEnum, a str Enum, a dict subclass) are stored as
    # the plain value they are; anything else is refused
    plain: type[Any]
    for plain in (bool, int, float, str, dict, list, tuple):
        if isinstance(value, plain):
            return _copy(plain(value), depth, max_depth)
    raise _Refused(
        f"a value of type {type(value).__name__} is not JSON serializable "
        "(use dicts, lists, strings, numbers, booleans and None)"
    )


_SURROGATE = re.compile("[\ud800-\udfff]")
_LONG_NUMBER = re.compile(rb"\d{19,}")


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}...{text[-6:]} ({len(text)} digits)"


def loads(body: bytes | str, limits: Limits = DEFAULT_LIMITS, *, what: str = "body") -> Any:
    """Parse JSON from a client and check it as ``check`` does.

    orjson turns integers past 64 bits into floats without a word; a body that has a run
    of 19 or more digits is parsed again exactly, so such a number is refused by name
    instead of silently changed. Malformed JSON raises ``json.JSONDecodeError``.
    """
    raw = body.encode() if isinstance(body, str) else body
    try:
        if _LONG_NUMBER.search(raw) is not None:
            value = json.loads(raw, parse_constant=_no_constant)
        else:
            value = orjson.loads(raw)
    except RecursionError:
        raise InvalidPayload(
            f"{what}: nested more than {limits.max_depth} levels deep (the limit)"
        ) from None
    return check(value, limits, what=what)


def _no_constant(name: str) -> Any:
    raise InvalidPayload(f"{name} is not a JSON number")
