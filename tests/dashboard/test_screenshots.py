"""Screenshots of the main pages, light and dark, saved under ``test-artifacts/dashboard/``
for people to look at after a test run."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.api.conftest import Server
from tests.dashboard.conftest import LAPTOP
from tests.dashboard.helpers import finished, start


def test_screenshots_of_the_runs_page_and_a_run_page(
    browser: Browser, dash_server: Server, http: httpx.Client, artifacts: Path
) -> None:
    finished(http, start(http, "crash", "the disk is full")["id"])
    finished(http, start(http, "talker", {"rounds": 2, "children": 2, "delay": 0})["id"])
    start(http, "waiter")
    live = start(
        http,
        "lingerer",
        {
            "topic": "the weather in Paris",
            "rounds": 3,
            "words": 30,
            "delay": 0,
            "fail_tool": True,
            "children": 2,
        },
    )
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport=LAPTOP, color_scheme=scheme)
        page = context.new_page()
        try:
            page.goto(f"{dash_server.url}/#/runs")
            expect(page.locator("table.runs")).to_have_attribute("data-loaded", "true")
            expect(page.locator(f'tr[data-run-id="{live["id"]}"] .badge')).to_have_text("running")
            page.screenshot(path=artifacts / f"runs-{scheme}.png")
            page.goto(f"{dash_server.url}/#/runs/{live['id']}")
            expect(page.locator("#timeline")).to_have_attribute(
                "data-last-seq", re.compile(r"^([4-9]\d|\d{3,})$")
            )
            expect(page.locator(".tree li li")).to_have_count(2)
            page.locator("details.tool.done").first.locator(":scope > summary").click()
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=artifacts / f"run-{scheme}.png")
            page.goto(f"{dash_server.url}/#/start")
            page.select_option("#agent", "talker")
            page.screenshot(path=artifacts / f"start-{scheme}.png")
        finally:
            context.close()
    http.post(f"/v1/runs/{live['id']}/cancel")
    chat = finished(http, start(http, "helper", "Weather in Paris?")["id"])
    made = http.post("/v1/schedules", json={"agent": "echo", "every": 600, "name": "ten minutes"})
    http.post(f"/v1/schedules/{made.json()['id']}/trigger")
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    try:
        page.goto(f"{dash_server.url}/#/sessions/{chat['session_id']}")
        expect(page.locator(".conversation .message")).to_have_count(4)
        page.screenshot(path=artifacts / "session-light.png")
        page.goto(f"{dash_server.url}/#/schedules/{made.json()['id']}")
        expect(page.locator("tbody tr .badge").last).to_have_text("completed")
        page.screenshot(path=artifacts / "schedule-light.png")
    finally:
        context.close()
    for name in ("session", "schedule"):
        assert (artifacts / f"{name}-light.png").stat().st_size > 10_000
    for name in ("runs", "run", "start"):
        for scheme in ("light", "dark"):
            assert (artifacts / f"{name}-{scheme}.png").stat().st_size > 10_000


def test_screenshots_of_runs_waiting_for_a_person(
    browser: Browser, dash_server: Server, http: httpx.Client, artifacts: Path
) -> None:
    mail = start(http, "mailer", "ann@example.com")
    asked = start(http, "asker", {"item": "cups"})
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport=LAPTOP, color_scheme=scheme)
        page = context.new_page()
        try:
            page.goto(f"{dash_server.url}/#/runs?status=waiting")
            for run in (mail, asked):
                row = page.locator(f'tr[data-run-id="{run["id"]}"]')
                expect(row.locator(".badge")).to_have_text("waiting")
            page.screenshot(path=artifacts / f"waiting-{scheme}.png")
            page.goto(f"{dash_server.url}/#/runs/{mail['id']}")
            expect(page.locator(".ask-panel .tool-name")).to_have_text("send_email")
            page.screenshot(path=artifacts / f"approval-{scheme}.png")
            page.goto(f"{dash_server.url}/#/runs/{asked['id']}")
            expect(page.locator(".ask-panel textarea")).to_be_visible()
            page.screenshot(path=artifacts / f"question-{scheme}.png")
        finally:
            context.close()
    for run in (mail, asked):
        http.post(f"/v1/runs/{run['id']}/cancel")
    for name in ("waiting", "approval", "question"):
        for scheme in ("light", "dark"):
            assert (artifacts / f"{name}-{scheme}.png").stat().st_size > 10_000
