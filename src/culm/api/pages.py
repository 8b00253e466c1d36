"""Response pages bounded in bytes as well as in items.

A page of a thousand runs or ten thousand events is a few hundred kilobytes when they are
small and gigabytes when each carries a megabyte of input or data. Every JSON page stops at
``max_page_bytes`` (always with at least one item, so a client can always move on) and says
where to continue: the same ``next_cursor`` / ``next_after`` a full page gives. The items
are read in slices sized from the largest item seen so far (64 first, at most 1,000), so for
items of similar sizes what the server holds to build a page stays near the budget instead
of growing with ``limit``. (A slice of small items followed by large ones can still be read
whole before the page stops: only a read bounded in bytes by the store would close that.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from fastapi import Response

from culm.api.wire import dumps

T = TypeVar("T")
C = TypeVar("C")

FIRST_SLICE = 64
"""Items read first, before anything is known of their size."""
MAX_SLICE = 1_000
"""Most items read at once."""


@dataclass(slots=True)
class Collected(Generic[T]):
    """The encoded items of one page, the last item itself, and whether more may follow
    (the page is full, or stopped at the byte budget)."""

    items: list[bytes]
    last: T | None
    more: bool


async def collect(
    fetch: Callable[[int, C | None], Awaitable[Sequence[T]]],
    *,
    start: C | None,
    cursor: Callable[[T], C],
    encode: Callable[[T], bytes],
    limit: int,
    budget: int,
) -> Collected[T]:
    """Up to ``limit`` items from ``fetch(n, after)`` (which returns at most ``n`` items
    following the cursor ``after``), stopping before the encoded items pass ``budget``
    bytes, but never before the first."""
    items: list[bytes] = []
    size = 0
    largest = 1
    last: T | None = None
    after = start
    want = min(limit, FIRST_SLICE)
    while True:
        batch = await fetch(want, after)
        for record in batch:
            encoded = encode(record)
            if items and size + len(encoded) + 1 > budget:
                return Collected(items, last, True)
            items.append(encoded)
            size += len(encoded) + 1
            largest = max(largest, len(encoded))
            last = record
        if len(items) >= limit:
            return Collected(items, last, True)
        if len(batch) < want or last is None:
            return Collected(items, last, False)
        after = cursor(last)
        room = max(budget - size, 1)
        want = max(1, min(limit - len(items), room // largest + 1, MAX_SLICE))


class Record(Protocol):
    """What a listing pages through: anything with an id that orders it, and a JSON shape."""

    @property
    def id(self) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Record)


def _record_json(record: Record) -> bytes:
    return dumps(record.to_dict())


async def listing(
    fetch: Callable[[int, Any], Awaitable[Sequence[R]]],
    *,
    limit: int,
    budget: int,
    start: Any = None,
    next_field: str = "next_cursor",
) -> Response:
    """A listing page, ``{"data": [...], next_field: ...}``: the field is the last item's
    id when more may follow (the page is full or reached ``budget`` bytes), else null."""
    page = await collect(
        fetch, start=start, cursor=lambda r: r.id, encode=_record_json, limit=limit, budget=budget
    )
    following = page.last.id if page.more and page.last is not None else None
    body = b'{"data":[%b],"%b":%b}' % (
        b",".join(page.items),
        next_field.encode(),
        dumps(following),
    )
    return Response(body, media_type="application/json")
