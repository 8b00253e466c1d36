"""Which events an endpoint receives: exact types (``run.completed``) or a prefix ending in
``.*`` (``run.*``, ``tool.*``, or a prefix of the application's own event types)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from culm.errors import InvalidInput

MAX_PATTERNS = 64
_PATTERN = re.compile(r"[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*(\.\*)?")


def check_patterns(patterns: Sequence[str]) -> list[str]:
    """The patterns without duplicates, in their order; ``InvalidInput`` when one is not an
    event type or ``prefix.*``, or there are none or too many."""
    if not patterns:
        raise InvalidInput("a webhook needs at least one event type, e.g. run.completed")
    if len(patterns) > MAX_PATTERNS:
        raise InvalidInput(f"a webhook may list at most {MAX_PATTERNS} event types")
    out: list[str] = []
    for pattern in patterns:
        if len(pattern) > 128 or not _PATTERN.fullmatch(pattern):
            raise InvalidInput(
                f"{pattern!r} is not an event type (like run.completed) or a prefix (like run.*)"
            )
        if pattern not in out:
            out.append(pattern)
    return out


def matches(patterns: Iterable[str], type: str) -> bool:
    """True when ``type`` is one of ``patterns`` or under one of their prefixes."""
    for pattern in patterns:
        if pattern.endswith(".*"):
            if type.startswith(pattern[:-1]):
                return True
        elif pattern == type:
            return True
    return False


def split(patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """Exact types and prefixes (with their final dot), for the query that reads the log."""
    exact: set[str] = set()
    prefixes: set[str] = set()
    for pattern in patterns:
        if pattern.endswith(".*"):
            prefixes.add(pattern[:-1])
        else:
            exact.add(pattern)
    return sorted(exact), sorted(prefixes)
