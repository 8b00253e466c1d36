"""Prometheus metrics in the text exposition format, written by hand.

A handful of gauges, two counters and one histogram do not justify a dependency; the
format is a few lines of text (https://prometheus.io/docs/instrumenting/exposition_formats/).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence

from culm.engine import Engine
from culm.models import RunStatus

DELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Counts of observations per bucket, their sum and count (one process, no locking:
    everything runs on the event loop)."""

    __slots__ = ("_counts", "buckets", "count", "sum")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self._counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        """Record ``value`` ``times`` times (a chunk of events delivered together)."""
        self._counts[bisect_left(self.buckets, value)] += times
        self.sum += value * times
        self.count += times

    def lines(self, name: str) -> list[str]:
        out = []
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), self._counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{le="{le}"}} {running}')
        out.append(f"{name}_sum {self.sum!r}")
        out.append(f"{name}_count {self.count}")
        return out


class Metrics:
    """What the HTTP layer measures itself; the rest is read from the engine at scrape time."""

    def __init__(self) -> None:
        self.delivery = Histogram(DELAY_BUCKETS)
        self.streams = 0


def _family(name: str, kind: str, help: str, samples: list[str]) -> list[str]:
    return [f"# HELP {name} {help}", f"# TYPE {name} {kind}", *samples]


def render(metrics: Metrics, engine: Engine, runs: Mapping[RunStatus, int]) -> str:
    """The exposition text for one scrape."""
    lines = [
        *_family(
            "culm_runs",
            "gauge",
            "Runs in the database by status.",
            [f'culm_runs{{status="{s.value}"}} {runs.get(s, 0)}' for s in RunStatus],
        ),
        *_family(
            "culm_queue_depth",
            "gauge",
            "Runs created and not started yet (pending).",
            [f"culm_queue_depth {runs.get(RunStatus.PENDING, 0)}"],
        ),
        *_family(
            "culm_events_appended_total",
            "counter",
            "Events this process appended to the log.",
            [f"culm_events_appended_total {engine.log.appended}"],
        ),
        *_family(
            "culm_event_commits_total",
            "counter",
            "Group commits of the event log by this process.",
            [f"culm_event_commits_total {engine.log.commits}"],
        ),
        *_family(
            "culm_live_subscribers",
            "gauge",
            "Live subscriptions to the event bus (streams, waits, watchers).",
            [f"culm_live_subscribers {engine.bus.subscriber_count}"],
        ),
        *_family(
            "culm_sse_streams",
            "gauge",
            "Open Server-Sent Events responses.",
            [f"culm_sse_streams {metrics.streams}"],
        ),
        *_family(
            "culm_event_delivery_seconds",
            "histogram",
            "Delay from an event's emission to its write to an SSE client, for events "
            "emitted while the client was connected (replays of older events are not counted).",
            metrics.delivery.lines("culm_event_delivery_seconds"),
        ),
    ]
    return "\n".join(lines) + "\n"
