"""Prometheus metrics through ``prometheus_client``: culm's own and the process's.

The hot path stays cheap: an SSE response adds a whole delivered batch to a plain
histogram in one call (``observe(delay, times)``), and the numbers become Prometheus
families only when ``/metrics`` is scraped. Each scrape builds its own registry, so any
number of apps in one interpreter (tests) never share or collide on metric names.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from culm.engine import Engine
from culm.llm.process import running_processes
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

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs, cumulative, ending with ``+Inf``."""
        out = []
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), self._counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class Metrics:
    """What the HTTP layer measures itself; the rest is read from the engine at scrape time."""

    def __init__(self) -> None:
        self.delivery = Histogram(DELAY_BUCKETS)
        self.streams = 0


class _CulmCollector(Collector):
    """culm's families for one scrape."""

    def __init__(self, metrics: Metrics, engine: Engine, runs: Mapping[RunStatus, int]) -> None:
        self._metrics = metrics
        self._engine = engine
        self._runs = runs

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("culm_runs", "Runs in the database by status.", labels=["status"])
        for status in RunStatus:
            runs.add_metric([status.value], self._runs.get(status, 0))
        yield runs
        yield GaugeMetricFamily(
            "culm_queue_depth",
            "Runs created and not started yet (pending).",
            value=self._runs.get(RunStatus.PENDING, 0),
        )
        log = self._engine.log
        yield CounterMetricFamily(
            "culm_events_appended", "Events this process appended to the log.", log.appended
        )
        yield CounterMetricFamily(
            "culm_event_commits", "Group commits of the event log by this process.", log.commits
        )
        executor = self._engine.executor
        yield GaugeMetricFamily(
            "culm_executing_runs",
            "Runs this process executes now (each holds a lease, renewed by this process).",
            value=executor.active,
        )
        yield CounterMetricFamily(
            "culm_runs_claimed",
            "Queued runs this process claimed to execute (workers, and processes with a "
            "concurrency limit).",
            value=executor.claimed,
        )
        yield GaugeMetricFamily(
            "culm_draining",
            "1 while this process drains (SIGTERM): it claims nothing more.",
            value=int(executor.draining),
        )
        yield GaugeMetricFamily(
            "culm_live_subscribers",
            "Live subscriptions to the event bus (streams, waits, watchers).",
            value=self._engine.bus.subscriber_count,
        )
        yield GaugeMetricFamily(
            "culm_sse_streams", "Open Server-Sent Events responses.", value=self._metrics.streams
        )
        delivery = self._metrics.delivery
        yield HistogramMetricFamily(
            "culm_event_delivery_seconds",
            "Delay from an event's emission to its write to an SSE client, for events "
            "emitted while the client was connected (replays of older events are not counted).",
            buckets=delivery.cumulative(),
            sum_value=delivery.sum,
        )
        processes = running_processes()
        yield GaugeMetricFamily(
            "culm_model_processes",
            "Local model processes running for this server.",
            value=sum(1 for p in processes if p.pid is not None),
        )
        yield CounterMetricFamily(
            "culm_model_process_starts",
            "Local model processes started, restarts after a crash included.",
            value=sum(p.starts for p in processes),
        )


def render(metrics: Metrics, engine: Engine, runs: Mapping[RunStatus, int]) -> str:
    """The exposition text for one scrape: culm's families, then the process's own
    (CPU seconds, resident memory, open files), the Python runtime's and its GC's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_CulmCollector(metrics, engine, runs))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return generate_latest(registry).decode()
