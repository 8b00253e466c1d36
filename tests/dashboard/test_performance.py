"""How the dashboard holds up: the runs page over 10,000 runs, a run page of 50,000 events.

Figures are measured in the browser (Navigation/User Timing, Long Tasks) and written to
``test-artifacts/dashboard/figures.json``; the bounds asserted here are what a person
would call slow on a 2-core machine shared with the server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

import culm
from tests.api.conftest import Server, start_server
from tests.dashboard.agents import app
from tests.dashboard.conftest import APP, LAPTOP
from tests.dashboard.helpers import CACHED_SEQ, finished, last_seq, start, until

RUNS = 10_000
EVENTS = 50_000

OBSERVE = """
window.__longtasks = [];
window.__gaps = [];
let last = performance.now();
const frame = (now) => {
  window.__gaps.push(now - last);
  last = now;
  requestAnimationFrame(frame);
};
requestAnimationFrame(frame);
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longtasks.push(e.duration);
}).observe({ type: "longtask", buffered: true });
"""


def record(artifacts: Path, name: str, figures: dict[str, Any]) -> None:
    path = artifacts / "figures.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    known[name] = figures
    path.write_text(json.dumps(known, indent=2) + "\n")
    print(f"\n{name}: {json.dumps(figures)}")


async def _seed(url: str, count: int) -> None:
    settings = culm.Settings(database_url=url, sqlite_synchronous="NORMAL")
    async with culm.Engine(app, settings) as engine:
        started = []
        for first in range(0, count, 500):
            started += await asyncio.gather(
                *(engine.start_run("echo", f"run {i}") for i in range(first, first + 500))
            )
        for run in started[-500:]:
            await engine.wait(run.id, 60)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose database holds 10,000 runs."""
    directory = tmp_path_factory.mktemp("crowded")
    # in a thread of its own: Playwright's sync API holds this thread's event loop
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _seed(f"sqlite:///{directory / 'culm.db'}", RUNS)).result()
    running = start_server(directory, **APP)
    yield running
    running.stop()


# longer than the suite's 120 s: the module's fixture first seeds 10,000 runs
@pytest.mark.timeout(300)
def test_runs_page_over_10000_runs_opens_fast_and_keeps_updating(
    browser: Browser, crowded: Server, artifacts: Path
) -> None:
    with httpx.Client(base_url=crowded.url, timeout=30) as http:
        total = 0
        cursor = None
        while True:  # the database really holds them
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page_ = http.get("/v1/runs", params=params).json()
            total += len(page_["data"])
            cursor = page_["next_cursor"]
            if cursor is None:
                break
        assert total >= RUNS
        opens = []
        for _ in range(5):
            context = browser.new_context(viewport=LAPTOP)
            page = context.new_page()
            page.goto(f"{crowded.url}/#/runs")
            expect(page.locator("table.runs")).to_have_attribute("data-loaded", "true")
            opens.append(
                page.evaluate("performance.getEntriesByName('culm:runs-rendered')[0].startTime")
            )
            context.close()
        context = browser.new_context(viewport=LAPTOP)
        page = context.new_page()
        page.goto(f"{crowded.url}/#/runs")
        expect(page.locator("table.runs")).to_have_attribute("data-loaded", "true")
        assert page.locator("tr[data-run-id]").count() == 50
        # it keeps updating: a new run appears, and its status changes
        begun = time.perf_counter()
        run = start(http, "waiter")
        row = page.locator(f'tr[data-run-id="{run["id"]}"]')
        expect(row.locator(".badge")).to_have_text("running")
        appeared = time.perf_counter() - begun
        http.post(f"/v1/runs/{run['id']}/cancel")
        expect(row.locator(".badge")).to_have_text("cancelled")
        polls = page.evaluate(
            """performance.getEntriesByType("resource")
              .filter((e) => e.name.includes("/v1/runs?")).map((e) => e.duration)"""
        )
        context.close()
    opens.sort()
    figures = {
        "runs_in_database": total,
        "open_ms_median": round(opens[2], 1),
        "open_ms_max": round(opens[-1], 1),
        "new_run_visible_s": round(appeared, 2),
        "poll_request_ms_median": round(sorted(polls)[len(polls) // 2], 1),
    }
    record(artifacts, "runs_page", figures)
    assert opens[2] < 1000, figures


# longer than the suite's 120 s: it waits for 50,000 events twice (live, then reloaded)
@pytest.mark.timeout(300)
def test_run_page_of_50000_events_stays_responsive(
    browser: Browser, dash_server: Server, http: httpx.Client, artifacts: Path
) -> None:
    context = browser.new_context(viewport=LAPTOP)
    context.add_init_script(OBSERVE)
    page: Page = context.new_page()
    try:
        run = start(http, "flood", EVENTS)
        begun = time.perf_counter()
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        # while events pour in, a click on a round folds it at once
        until(lambda: last_seq(page) > 10_000, timeout=60, what="10,000 events drawn")
        first = page.locator("details.section.round").first
        first.locator(":scope > summary").focus()
        clicked = time.perf_counter()
        page.keyboard.press("Enter")
        expect(first).not_to_have_attribute("open", "")
        fold_live = time.perf_counter() - clicked
        drawn_mid = last_seq(page)
        ended = finished(http, run["id"], timeout=120)
        until(lambda: last_seq(page) == ended["last_seq"], timeout=120, what="all drawn")
        all_drawn = time.perf_counter() - begun
        assert ended["last_seq"] >= EVENTS
        tasks = page.evaluate("window.__longtasks")
        gaps = sorted(page.evaluate("window.__gaps"))
        # once all is there: open tool calls here and there (from the keyboard), go to the top
        opens = []
        for nth in (100, 250, 400):
            tool = page.locator("details.tool").nth(nth)
            tool.locator(":scope > summary").focus()
            clicked = time.perf_counter()
            page.keyboard.press("Enter")
            expect(tool.locator("pre").first).to_be_visible()
            opens.append(time.perf_counter() - clicked)
        open_tool = sorted(opens)[1]
        clicked = time.perf_counter()
        page.keyboard.press("Home")
        page.evaluate(
            "() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)))"
        )
        to_top = time.perf_counter() - clicked
        dom_nodes = page.evaluate("document.getElementsByTagName('*').length")
        # a reload draws it all again from this browser's copy, asking the server for nothing
        until(
            lambda: page.evaluate(CACHED_SEQ, run["id"]) == ended["last_seq"],
            timeout=60,
            what="all events kept in the browser",
        )
        cached_s = time.perf_counter() - begun
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/events" in r.url else None)
        clicked = time.perf_counter()
        page.reload()
        until(lambda: last_seq(page) == ended["last_seq"], timeout=120, what="redrawn")
        reload_s = time.perf_counter() - clicked
        assert asked == []
    finally:
        context.close()
    # and a browser that has none of it loads it from the server
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    try:
        clicked = time.perf_counter()
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        until(lambda: last_seq(page) == ended["last_seq"], timeout=120, what="loaded")
        cold_s = time.perf_counter() - clicked
    finally:
        context.close()
    figures = {
        "events": ended["last_seq"],
        "live_all_drawn_s": round(all_drawn, 2),
        "fold_click_while_streaming_ms": round(fold_live * 1000, 1),
        "drawn_when_clicked": drawn_mid,
        "longest_task_ms": round(max(tasks, default=0), 1),
        "frame_gap_ms_p95": round(gaps[int(len(gaps) * 0.95)], 1),
        "frame_gap_ms_max": round(gaps[-1], 1),
        "tasks_over_50ms": len(tasks),
        "open_tool_after_ms": round(open_tool * 1000, 1),
        "home_key_to_frame_ms": round(to_top * 1000, 1),
        "dom_elements": dom_nodes,
        "all_kept_in_browser_s": round(cached_s, 2),
        "reload_from_browser_cache_s": round(reload_s, 2),
        "cold_load_from_server_s": round(cold_s, 2),
    }
    record(artifacts, "run_page", figures)
    assert fold_live < 0.5, figures
    assert open_tool < 0.5, figures
    # wall time, so it includes what other processes on this shared machine took from us
    assert max(tasks, default=0) < 1000, figures
