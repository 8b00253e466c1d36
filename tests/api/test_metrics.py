"""``/metrics`` through prometheus_client: culm's families and the process's own."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def test_process_and_runtime_metrics_are_exposed(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in (
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_info",
        "culm_runs",
        "culm_event_delivery_seconds",
        "culm_model_processes",
        "culm_model_process_starts",
    ):
        assert name in families, sorted(families)
    [rss] = families["process_resident_memory_bytes"].samples
    assert rss.value > 1_000_000
    assert families["culm_event_delivery_seconds"].type == "histogram"
    assert families["culm_model_process_starts"].type == "counter"
