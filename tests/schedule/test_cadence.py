"""Fire times: cron in a time zone across DST changes, month ends and leap days;
intervals; one-time; start and end bounds."""

from __future__ import annotations

from datetime import datetime
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest

from culm.errors import InvalidInput
from culm.models import ScheduleSpec
from culm.schedule.cadence import check_cron, cron_times, fire_times, interval_times, utc, zone


def local(times: list[float], tz: str) -> list[str]:
    return [datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat(timespec="minutes") for t in times]


def first(expr: str, tz: str, after: str, n: int) -> list[str]:
    start = datetime.fromisoformat(after).timestamp()
    return local(list(islice(cron_times(expr, tz, start), n)), tz)


class TestCronAcrossDst:
    """A time of day fires once a day whatever the clocks do; an every-hour pattern follows
    real hours: the repeated hour fires twice, the skipped one not at all."""

    # fmt: off
    CASES = (
        # Europe/Paris: 2030-03-31 02:00 -> 03:00, 2030-10-27 03:00 -> 02:00
        ("30 2 * * *", "Europe/Paris", "2030-03-30T12:00+01:00",
         ["2030-03-31T03:30+02:00", "2030-04-01T02:30+02:00"]),
        ("0 2 * * *", "Europe/Paris", "2030-03-30T12:00+01:00",
         ["2030-03-31T03:00+02:00", "2030-04-01T02:00+02:00"]),
        ("0 9 * * 1-5", "Europe/Paris", "2030-03-29T09:00+01:00",
         ["2030-04-01T09:00+02:00", "2030-04-02T09:00+02:00"]),
        ("30 * * * *", "Europe/Paris", "2030-03-31T00:45+01:00",
         ["2030-03-31T01:30+01:00", "2030-03-31T03:30+02:00", "2030-03-31T04:30+02:00"]),
        ("30 2 * * *", "Europe/Paris", "2030-10-26T12:00+02:00",
         ["2030-10-27T02:30+02:00", "2030-10-28T02:30+01:00"]),
        ("30 * * * *", "Europe/Paris", "2030-10-27T01:00+02:00",
         ["2030-10-27T01:30+02:00", "2030-10-27T02:30+02:00", "2030-10-27T02:30+01:00",
          "2030-10-27T03:30+01:00"]),
        ("*/20 2 * * *", "Europe/Paris", "2030-10-27T01:59+02:00",
         ["2030-10-27T02:00+02:00", "2030-10-27T02:20+02:00", "2030-10-27T02:40+02:00",
          "2030-10-28T02:00+01:00"]),
        # from inside the repeated hour, the second 02:30 is still ahead
        ("30 * * * *", "Europe/Paris", "2030-10-27T02:45+02:00",
         ["2030-10-27T02:30+01:00", "2030-10-27T03:30+01:00"]),
        # America/New_York: 2030-03-10 02:00 -> 03:00, 2030-11-03 02:00 -> 01:00
        ("30 2 * * *", "America/New_York", "2030-03-09T12:00-05:00",
         ["2030-03-10T03:30-04:00", "2030-03-11T02:30-04:00"]),
        ("0 0 * * *", "America/New_York", "2030-03-09T12:00-05:00",
         ["2030-03-10T00:00-05:00", "2030-03-11T00:00-04:00"]),
        ("30 1 * * *", "America/New_York", "2030-11-02T12:00-04:00",
         ["2030-11-03T01:30-04:00", "2030-11-04T01:30-05:00"]),
        ("*/30 * * * *", "America/New_York", "2030-11-03T00:45-04:00",
         ["2030-11-03T01:00-04:00", "2030-11-03T01:30-04:00", "2030-11-03T01:00-05:00",
          "2030-11-03T01:30-05:00", "2030-11-03T02:00-05:00"]),
        # Australia/Sydney: 2030-04-07 03:00 -> 02:00, 2030-10-06 02:00 -> 03:00
        ("30 2 * * *", "Australia/Sydney", "2030-04-06T12:00+11:00",
         ["2030-04-07T02:30+11:00", "2030-04-08T02:30+10:00"]),
        ("30 2 * * *", "Australia/Sydney", "2030-10-05T12:00+10:00",
         ["2030-10-06T03:30+11:00", "2030-10-07T02:30+11:00"]),
        ("0 * * * *", "Australia/Sydney", "2030-04-07T01:30+11:00",
         ["2030-04-07T02:00+11:00", "2030-04-07T02:00+10:00", "2030-04-07T03:00+10:00"]),
        # Australia/Lord_Howe moves by half an hour: 2030-10-06 02:00 -> 02:30, 04-07 back
        ("15 2 * * *", "Australia/Lord_Howe", "2030-10-05T12:00+10:30",
         ["2030-10-06T02:45+11:00", "2030-10-07T02:15+11:00"]),
        ("*/15 * * * *", "Australia/Lord_Howe", "2030-04-07T01:20+11:00",
         ["2030-04-07T01:30+11:00", "2030-04-07T01:45+11:00", "2030-04-07T01:30+10:30",
          "2030-04-07T01:45+10:30", "2030-04-07T02:00+10:30"]),
        # no DST at all, and a half-hour offset
        ("@daily", "Asia/Kolkata", "2030-01-01T00:00+05:30",
         ["2030-01-02T00:00+05:30", "2030-01-03T00:00+05:30"]),
    )
    # fmt: on

    @pytest.mark.parametrize(("expr", "tz", "after", "expected"), CASES)
    def test_next_fire_times(self, expr: str, tz: str, after: str, expected: list[str]) -> None:
        assert first(expr, tz, after, len(expected)) == expected

    @pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York", "Australia/Sydney"])
    def test_every_hour_pattern_keeps_real_hours_all_year(self, tz: str) -> None:
        times = list(islice(cron_times("0 * * * *", tz, utc("2030-01-01")), 24 * 365))
        assert {b - a for a, b in pairwise(times)} == {3600.0}

    @pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York", "Australia/Sydney"])
    def test_time_of_day_fires_once_every_day_all_year(self, tz: str) -> None:
        times = list(islice(cron_times("30 2 * * *", tz, utc("2029-12-31T12:00")), 365))
        days = [datetime.fromtimestamp(t, ZoneInfo(tz)).date().toordinal() for t in times]
        assert days == list(range(days[0], days[0] + 365))


class TestCalendar:
    """Month ends and leap days come from the calendar, not from arithmetic."""

    # fmt: off
    CASES = (
        ("0 0 31 * *", "UTC", "2030-01-31T00:00+00:00",
         ["2030-03-31T00:00+00:00", "2030-05-31T00:00+00:00", "2030-07-31T00:00+00:00",
          "2030-08-31T00:00+00:00"]),
        ("0 12 29 2 *", "UTC", "2030-01-01T00:00+00:00",
         ["2032-02-29T12:00+00:00", "2036-02-29T12:00+00:00"]),
        ("0 0 L 2 *", "UTC", "2031-06-01T00:00+00:00",
         ["2032-02-29T00:00+00:00", "2033-02-28T00:00+00:00"]),
        ("0 9 29 2 *", "Europe/Paris", "2030-01-01T00:00+01:00", ["2032-02-29T09:00+01:00"]),
        ("0 0 1 * *", "Australia/Sydney", "2030-03-15T00:00+11:00",
         ["2030-04-01T00:00+11:00", "2030-05-01T00:00+10:00"]),
        ("59 23 31 12 *", "America/New_York", "2030-06-01T00:00-04:00",
         ["2030-12-31T23:59-05:00", "2031-12-31T23:59-05:00"]),
    )
    # fmt: on

    @pytest.mark.parametrize(("expr", "tz", "after", "expected"), CASES)
    def test_next_fire_times(self, expr: str, tz: str, after: str, expected: list[str]) -> None:
        assert first(expr, tz, after, len(expected)) == expected

    def test_an_impossible_date_has_no_fire_time(self) -> None:
        assert list(cron_times("0 0 30 2 *", "UTC", utc("2030-01-01"))) == []


class TestInterval:
    """Intervals are exact seconds on a grid through the anchor, DST or not."""

    CASES = (
        (90.0, 1000.0, 1000.0, [1090.0, 1180.0, 1270.0]),
        (90.0, 1000.0, 1090.0, [1180.0, 1270.0, 1360.0]),
        (90.0, 1000.0, 1089.999, [1090.0, 1180.0, 1270.0]),
        (60.0, 10_040.0, 1000.0, [1040.0, 1100.0, 1160.0]),  # an anchor ahead aligns too
        (3600.0, 0.0, utc("2030-03-31T00:30"), [utc("2030-03-31T01:00"), utc("2030-03-31T02:00")]),
    )

    @pytest.mark.parametrize(("every", "anchor", "after", "expected"), CASES)
    def test_grid(self, every: float, anchor: float, after: float, expected: list[float]) -> None:
        assert list(islice(interval_times(every, anchor, after), len(expected))) == expected


class TestBounds:
    """``start_at`` and ``end_at`` bound the fire times, inclusive; ``at`` fires once."""

    def times(self, spec: ScheduleSpec, after: float, n: int = 10) -> list[float]:
        return list(islice(fire_times(spec, created_at=0.0, after=after), n))

    def test_interval_without_anchor_starts_at_start(self) -> None:
        spec = ScheduleSpec(agent="a", every=60.0, start_at=1000.0)
        assert self.times(spec, 0.0, 2) == [1000.0, 1060.0]

    def test_interval_without_anchor_or_start_counts_from_creation(self) -> None:
        spec = ScheduleSpec(agent="a", every=60.0)
        assert self.times(spec, 0.0, 2) == [60.0, 120.0]

    def test_end_is_inclusive(self) -> None:
        spec = ScheduleSpec(agent="a", every=60.0, end_at=180.0)
        assert self.times(spec, 0.0) == [60.0, 120.0, 180.0]

    def test_cron_between_start_and_end(self) -> None:
        spec = ScheduleSpec(
            agent="a",
            cron="0 9 * * *",
            timezone="Europe/Paris",
            start_at=utc("2030-01-10T00:00"),
            end_at=utc("2030-01-12T08:00"),
        )
        assert local(self.times(spec, utc("2030-01-01")), "Europe/Paris") == [
            "2030-01-10T09:00+01:00",
            "2030-01-11T09:00+01:00",
            "2030-01-12T09:00+01:00",
        ]

    def test_one_time(self) -> None:
        spec = ScheduleSpec(agent="a", at=500.0)
        assert self.times(spec, 0.0) == [500.0]
        assert self.times(spec, 500.0) == []

    def test_one_time_before_start_never_fires(self) -> None:
        assert self.times(ScheduleSpec(agent="a", at=500.0, start_at=600.0), 0.0) == []


class TestValidation:
    """Expressions and zones are checked up front, with a message that says what to write."""

    @pytest.mark.parametrize(
        "expr", ["", "* * * *", "61 * * * *", "0 0 * * * *", "every day", "@fortnightly"]
    )
    def test_bad_cron(self, expr: str) -> None:
        with pytest.raises(InvalidInput, match="cron expression"):
            check_cron(expr)

    @pytest.mark.parametrize(
        "expr", ["0 9 * * 1-5", "*/5 * * * *", "@daily", "@hourly", "0 0 L * *"]
    )
    def test_good_cron(self, expr: str) -> None:
        check_cron(expr)

    @pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "europe/paris "])
    def test_unknown_zone(self, name: str) -> None:
        with pytest.raises(InvalidInput, match="time zone"):
            zone(name)
