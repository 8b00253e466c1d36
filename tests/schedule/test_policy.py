"""Misfire and overlap rules as tables: what due fire times turn into, and what a firing
does when the schedule's previous run is still active."""

from __future__ import annotations

from itertools import count

import pytest

from culm.models import Misfire, Overlap
from culm.schedule.policy import (
    SCAN_LIMIT,
    Action,
    Due,
    Plan,
    keep_for,
    overlap,
    plan,
    scan_due,
)


def every(step: float, start: float = 0.0):  # type: ignore[no-untyped-def]
    """The times of a cadence firing every ``step`` seconds from ``start`` (exclusive)."""

    def times_after(after: float):  # type: ignore[no-untyped-def]
        k = max(int((after - start) // step) + 1, 1)
        return (start + i * step for i in count(k))

    return times_after


def due(*times: float, total: int | None = None) -> Due:
    return Due(total or len(times), times[0], times)


class TestPlan:
    """Never more than one run for a backlog, except ``catch_up``, and then a bounded few."""

    # now = 1000 in every row; grace 60, max_catch_up 3, max_lateness 300
    # fmt: off
    CASES = (
        # a lone fire time within the grace period is on time, whatever the policy
        (Misfire.RUN_ONCE, due(990), Plan((990,))),
        (Misfire.SKIP, due(990), Plan((990,))),
        (Misfire.CATCH_UP, due(990), Plan((990,))),
        # a lone late one
        (Misfire.RUN_ONCE, due(500), Plan((500,))),
        (Misfire.SKIP, due(500), Plan((), 1, 500, 500)),
        (Misfire.CATCH_UP, due(800), Plan((800,))),
        (Misfire.CATCH_UP, due(500), Plan((), 1, 500, 500)),
        # a backlog whose latest is on time
        (Misfire.RUN_ONCE, due(100, 400, 700, 990, total=10), Plan((990,), 9, 100, 700)),
        (Misfire.SKIP, due(100, 400, 700, 990, total=10), Plan((990,), 9, 100, 700)),
        (Misfire.CATCH_UP, due(100, 600, 750, 800, 990, total=10),
         Plan((750, 800, 990), 7, 100, 600)),
        # a backlog that is all late
        (Misfire.RUN_ONCE, due(100, 200, 300), Plan((300,), 2, 100, 200)),
        (Misfire.SKIP, due(100, 200, 300), Plan((), 3, 100, 300)),
        (Misfire.CATCH_UP, due(100, 200, 300), Plan((), 3, 100, 300)),
        (Misfire.CATCH_UP, due(100, 750, 800), Plan((750, 800), 1, 100, 100)),
    )
    # fmt: on

    @pytest.mark.parametrize(("policy", "given", "expected"), CASES)
    def test_plan(self, policy: Misfire, given: Due, expected: Plan) -> None:
        decided = plan(given, 1000, policy, grace=60, max_catch_up=3, max_lateness=300)
        assert decided == expected

    def test_grace_longer_than_lateness_still_counts_as_on_time(self) -> None:
        decided = plan(due(500, 900), 1000, Misfire.CATCH_UP, grace=200, max_catch_up=5,
                       max_lateness=50)  # fmt: skip
        assert decided == Plan((900,), 1, 500, 500)

    @pytest.mark.parametrize(
        ("policy", "catch_up", "keep"),
        [(Misfire.RUN_ONCE, 7, 2), (Misfire.SKIP, 7, 2), (Misfire.CATCH_UP, 7, 8)],
    )
    def test_keep_is_enough_to_name_the_last_missed(
        self, policy: Misfire, catch_up: int, keep: int
    ) -> None:
        assert keep_for(policy, catch_up) == keep


class TestScanDue:
    """The backlog is counted without walking a long downtime tick by tick."""

    def test_nothing_due(self) -> None:
        assert scan_due(every(60), 0, 59, keep=2) is None

    def test_counts_and_keeps_the_latest(self) -> None:
        assert scan_due(every(60), 0, 600, keep=2) == Due(10, 60, (540, 600))

    def test_after_is_exclusive_and_now_inclusive(self) -> None:
        assert scan_due(every(60), 60, 120, keep=3) == Due(1, 120, (120,))

    def test_a_long_downtime_still_finds_the_latest(self) -> None:
        now = 60.0 * (SCAN_LIMIT * 50) + 30
        found = scan_due(every(60), 0, now, keep=3)
        assert found is not None
        assert found.first == 60
        assert found.latest == (now - 150, now - 90, now - 30)
        assert SCAN_LIMIT <= found.count <= SCAN_LIMIT * 50

    def test_an_uneven_cadence_after_a_long_downtime(self) -> None:
        # dense for a while, then nothing for a long time, then one more
        dense = [float(i) for i in range(1, SCAN_LIMIT + 5)]
        late = 10_000_000.0

        def times_after(after: float):  # type: ignore[no-untyped-def]
            return (t for t in [*dense, late] if t > after)

        found = scan_due(times_after, 0, late + 1_000_000, keep=2)
        assert found is not None
        assert found.latest[-1] == late


class TestOverlap:
    """What a firing does while its schedule has ``active`` runs (and maybe one waiting)."""

    # fmt: off
    CASES = (
        (Overlap.ALLOW, 0, False, Action.START),
        (Overlap.SKIP, 0, False, Action.START),
        (Overlap.ENQUEUE, 0, False, Action.START),
        (Overlap.CANCEL_PREVIOUS, 0, False, Action.START),
        (Overlap.ALLOW, 2, False, Action.START),
        (Overlap.SKIP, 1, False, Action.SKIP),
        (Overlap.ENQUEUE, 1, False, Action.WAIT),
        (Overlap.ENQUEUE, 1, True, Action.SKIP),  # at most one waits
        (Overlap.ENQUEUE, 0, True, Action.SKIP),
        (Overlap.CANCEL_PREVIOUS, 1, False, Action.CANCEL_AND_START),
    )
    # fmt: on

    @pytest.mark.parametrize(("policy", "active", "waiting", "expected"), CASES)
    def test_overlap(self, policy: Overlap, active: int, waiting: bool, expected: Action) -> None:
        assert overlap(policy, active, waiting) is expected
