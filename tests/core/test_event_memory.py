"""What a remembered event costs: its encoded JSON takes about its length, not a buffer."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

from culm.events import Event
from culm.payload import DEFAULT_LIMITS, check_encoded


def _bytes_held(make: Callable[[], object]) -> float:
    """Bytes allocated per object kept, for 200 objects made by ``make``."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [make() for _ in range(200)]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert len(kept) == 200
    return held / 200


class TestEncodedEvents:
    """Runners and the recent events' cache keep events' JSON for as long as a run lives,
    so each copy must cost what it holds (orjson's own result keeps a 4 KB buffer)."""

    def test_checked_data_holds_its_length(self) -> None:
        assert _bytes_held(lambda: check_encoded({"i": 1}, DEFAULT_LIMITS)[1]) < 400

    def test_an_events_json_holds_its_length(self) -> None:
        def encoded() -> tuple[bytes, bytes]:
            event = Event(1, "run_1", "ses_1", "x.tick", {"i": 1}, ts=1.0)
            return event.data_json(), event.to_json()

        assert _bytes_held(encoded) < 1_200
