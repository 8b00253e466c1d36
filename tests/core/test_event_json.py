"""An event's JSON: encoded by its runner as it is emitted, the same bytes as read back."""

from __future__ import annotations

import math
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

import culm
from culm.events import Event, by_run, iso, iso_bytes
from tests.conftest import EngineFactory

app = culm.App()

ODD_TYPES = ["plain.tick", 'say."quoted"', "tab\there", "héllo.wörld", "emoji.🎈", "back\\slash"]


@app.agent
async def odd(run: culm.RunContext, input: None = None) -> str:
    """Emits types and data that need escaping, and times that need rounding."""
    for i, type in enumerate(ODD_TYPES):
        await run.emit(type, {"i": i, "text": type, "nested": [{"ü": None}, 1.5, -(2**63)]})
    return "ok"


class TestIsoBytes:
    """The timestamp of every event's JSON is what ``iso`` (a datetime) says, to the byte."""

    @given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
    def test_any_time(self, ts: float) -> None:
        assert iso_bytes(ts) == str(iso(ts)).encode()

    @given(st.integers(min_value=0, max_value=4_000_000_000), st.integers(0, 999_999))
    def test_whole_seconds_and_half_microseconds(self, second: int, micros: int) -> None:
        # a whole second has no fraction in ISO 8601 as datetime writes it; a half
        # microsecond rounds to even, and 999999.5 into the next second
        for ts in (float(second), second + (micros + 0.5) / 1e6, math.nextafter(second, 0)):
            assert iso_bytes(ts) == str(iso(ts)).encode()


class TestEmittedJson:
    async def test_the_runners_json_is_what_the_log_gives_back(
        self, make_engine: EngineFactory
    ) -> None:
        """A stream sends each event as its runner encoded it, one resuming later as it is
        read from the log: both must be the same text, and each the event's ``to_dict``."""
        async with make_engine(app) as engine:
            run = await engine.start_run("odd")
            live = [e async for e in engine.subscribe(run.id)]
            stored = await engine.store.read_events(run.id)
        assert [e.type for e in live if e.type in ODD_TYPES] == ODD_TYPES
        assert len(stored) == len(live)
        for sent, read in zip(live, stored, strict=True):
            assert read._json is None  # encoded here, from the row
            assert sent.to_json() == read.to_json()
            assert orjson.loads(sent.to_json()) == _plain(sent.to_dict())

    def test_a_parent_is_named(self) -> None:
        event = Event(3, "run_b", "ses_a", "t", {}, ts=1.25, parent_run_id="run_a")
        assert orjson.loads(event.to_json()) == _plain(event.to_dict())
        assert orjson.loads(event.to_json())["parent_run_id"] == "run_a"


class TestByRun:
    def test_slices_of_consecutive_events_of_one_run(self) -> None:
        runs = ["a", "a", "b", "a", "a", "a", "c"]
        events = [Event(i, r, "s", "t", {}) for i, r in enumerate(runs)]
        slices = list(by_run(events))
        assert [[e.run_id for e in s] for s in slices] == [["a", "a"], ["b"], ["a"] * 3, ["c"]]
        assert [e for s in slices for e in s] == events
        assert list(by_run([])) == []


def _plain(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))
