"""Small steps the dashboard tests share."""

from __future__ import annotations

import time
from typing import Any

import httpx
from playwright.sync_api import Page


def start(http: httpx.Client, agent: str, input: Any = None, **body: Any) -> dict[str, Any]:
    """Start a run over HTTP; returns it."""
    response = http.post("/v1/runs", json={"agent": agent, "input": input, **body})
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def finished(http: httpx.Client, run_id: str, timeout: float = 30) -> dict[str, Any]:
    """The run once it has ended."""
    response = http.post(f"/v1/runs/{run_id}/wait", params={"timeout": timeout})
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    assert run["status"] not in ("pending", "running"), run
    return run


def last_seq(page: Page) -> int:
    """The sequence number of the last event the timeline has drawn."""
    return int(page.locator("#timeline").get_attribute("data-last-seq") or 0)


def until(check: Any, timeout: float = 15, what: str = "condition") -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not true after {timeout}s")
        time.sleep(0.05)


CACHED_SEQ = """async (runId) => {
  const db = await new Promise((ok, no) => {
    const r = indexedDB.open("culm-dashboard");
    r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error);
  });
  const record = await new Promise((ok, no) => {
    const r = db.transaction("runs").objectStore("runs").get(runId);
    r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error);
  });
  db.close();
  return record ? record.last_seq : 0;
}"""
"""How many of a run's events this browser keeps (IndexedDB)."""

RECEIVED_ON_LEAVING = """addEventListener("pagehide", () => {
  const timeline = document.getElementById("timeline");
  if (timeline) sessionStorage.setItem("test.received", timeline.dataset.receivedSeq || "0");
});"""
"""Keeps, as the page is left, the seq of the last event it received (in ``test.received``)."""

NEXT_EVENT = """() => new Promise((resolve) => {
  const timeline = document.getElementById("timeline");
  new MutationObserver((_, observer) => {
    observer.disconnect();
    resolve();
  }).observe(timeline, { attributes: true, attributeFilter: ["data-received-seq"] });
})"""
"""Resolves when the run page receives its next events."""
